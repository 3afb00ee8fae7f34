// SPDX-License-Identifier: MIT
//
// `xbuf topo`: every test topology loads and prints; the real binary's exit
// codes (0 ok, 1 a file it cannot use, 2 usage) and output for good and bad
// input; the JSON shape.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "p2p/hwloc_loader.hpp"
#include "p2p/pci_details.hpp"
#include "p2p/topo_format.hpp"

namespace xbuf::p2p {
namespace {

namespace fs = std::filesystem;

const fs::path topologies = fs::path(XBUF_TEST_DATA_DIR) / "topologies";

struct run_result {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

// Runs the real `xbuf` binary; arguments are file names without quotes.
run_result run_xbuf(const std::string& args) {
  const std::string cmd = std::string(XBUF_BIN_DIR) + "/xbuf " + args + " 2>&1";
  run_result r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

fs::path temp_file(const std::string& name, const std::string& content) {
  const fs::path p = fs::temp_directory_path() / ("xbuf_p2p_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p) << content;
  return p;
}

TEST(TopoCommandTest, EveryTestTopologyLoadsAndPrints) {
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(topologies)) {
    if (e.path().extension() != ".xml") continue;
    ++files;
    auto t = load_topology_xml(e.path().string());
    ASSERT_TRUE(t) << e.path() << ": " << t.err().describe();
    const topo_report r = build_report(*t);
    const std::string text = format_text(*t, r);
    const std::string json = format_json(*t, r);
    EXPECT_NE(text.find("Topology: " + e.path().string()), std::string::npos) << e.path();
    EXPECT_EQ(json.rfind("{\"schema\":\"xbuf.topo/1\",\"source\":", 0), 0u) << e.path();
    EXPECT_NE(json.find(",\"devices\":["), std::string::npos) << e.path();
    if (t->functions().empty()) {
      EXPECT_NE(text.find("No PCI objects"), std::string::npos) << e.path();
    } else {
      EXPECT_FALSE(t->dma_devices().empty() && text.find("none") == std::string::npos) << e.path();
    }
  }
  EXPECT_GE(files, 20u) << "the test data holds every top-level shared XML";
}

TEST(TopoCommandTest, BinaryPrintsDgx2MatricesAndExitsZero) {
  const run_result r = run_xbuf("topo --xml " + (topologies / "nvidiaDGX2.xml").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* want : {"Topology matrix", "PCIe-only matrix", "p2pdma verdict matrix", "GPU15",
                           "NV6", "PXB", "CPU Affinity", "NUMA Affinity", "Legend:", "BUS/4",
                           "HB/12", "assume no ACS redirect"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
}

TEST(TopoCommandTest, BinaryJsonHasTheIssueShapeOrderedGpusFirst) {
  const run_result r = run_xbuf("topo --json --xml " + (topologies / "flux-core_ipa20.xml").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string head = "{\"schema\":\"xbuf.topo/1\",\"source\":\"" + (topologies / "flux-core_ipa20.xml").string() +
                           "\",";
  ASSERT_EQ(r.out.rfind(head, 0), 0u) << r.out.substr(0, 300);
  EXPECT_EQ(r.out.find("\"devices\":[{\"index\":0,\"kind\":\"gpu\",\"name\":\"NVIDIA H100 80GB HBM3\","
                        "\"pci\":\"0000:4e:00.0\",\"numa\":3,\"cpus\":\"42-55,154-167\"}"),
            head.size())
      << r.out.substr(0, 300);
  for (const char* key : {"\"path\":[[\"X\",\"NV6\"", "\"pcie\":[[\"X\",\"SYS\"",
                          "\"p2p\":[[\"self\",\"unknown\"", "\"distance\":[[0,8,", "\"reasons\":[["}) {
    EXPECT_NE(r.out.find(key), std::string::npos) << key;
  }
  // GPUs, then NICs, then the rest.
  const auto first_nic = r.out.find("\"kind\":\"nic\"");
  const auto last_gpu = r.out.rfind("\"kind\":\"gpu\"");
  const auto first_nvme = r.out.find("\"kind\":\"nvme\"");
  EXPECT_LT(last_gpu, first_nic);
  EXPECT_LT(first_nic, first_nvme);
}

// A file that cannot be read is a runtime error (1), not a usage error (2).
TEST(TopoCommandTest, MissingFileExitsOneNamingTheFile) {
  const run_result r = run_xbuf("topo --xml /nonexistent/dir/machine.xml");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("/nonexistent/dir/machine.xml"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("No such file"), std::string::npos) << r.out;
}

TEST(TopoCommandTest, GarbageXmlExitsOneSayingItIsNotATopology) {
  const fs::path p = temp_file("garbage.xml", "<topology version=\"2.0\"><object type=\"Machine\"");
  const run_result r = run_xbuf("topo --xml " + p.string());
  fs::remove(p);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find(p.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not a valid hwloc topology"), std::string::npos) << r.out;
}

TEST(TopoCommandTest, NonXmlAndEmptyFilesAreParseErrors) {
  const fs::path text = temp_file("text.xml", "this is not xml at all\n");
  const fs::path empty = temp_file("empty.xml", "");
  auto a = load_topology_xml(text.string());
  auto b = load_topology_xml(empty.string());
  fs::remove(text);
  fs::remove(empty);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.code(), errc::parse_error);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::parse_error);
  EXPECT_NE(b.err().message.find("empty"), std::string::npos) << b.err().message;
}

TEST(TopoCommandTest, DirectoryIsRejectedAsNotAFile) {
  auto t = load_topology_xml(topologies.string());
  ASSERT_FALSE(t);
  EXPECT_EQ(t.code(), errc::invalid_argument);
  EXPECT_NE(t.err().message.find("directory"), std::string::npos);
}

TEST(TopoCommandTest, NoIoTopologySaysSoAndExitsZero) {
  const run_result r = run_xbuf("topo --xml " + (topologies / "32em64t-2n8c2t-pci-noio.xml").string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("No PCI objects"), std::string::npos) << r.out;
}

TEST(TopoCommandTest, TopologyWithoutGpusListsPciDevicesAndSaysNoGpu) {
  const run_result r = run_xbuf("topo --xml " + (topologies / "devel09-pci.xml").string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("No GPU found. PCI functions"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mlx4_0"), std::string::npos) << r.out;
}

TEST(TopoCommandTest, LiveMachineRunsAndExitsZero) {
  const run_result r = run_xbuf("topo");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("Topology: live"), std::string::npos) << r.out;
  auto t = load_topology_live();
  ASSERT_TRUE(t) << t.err().describe();
  bool any_gpu = false;
  for (int i : t->dma_devices()) any_gpu = any_gpu || t->node(i).kind_of_device == device_kind::gpu;
  if (!any_gpu) {
    EXPECT_NE(r.out.find("No GPU"), std::string::npos) << r.out;
  }
}

TEST(TopoCommandTest, UnknownOptionAndMissingArgumentExitTwo) {
  EXPECT_EQ(run_xbuf("topo --bogus").rc, 2);
  const run_result r = run_xbuf("topo --xml");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("--xml needs a file name"), std::string::npos) << r.out;
}

TEST(PciDetailsTest, AcsRedirectBitsAreRequestCompletionAndEgress) {
  EXPECT_EQ(acs_from_control(0x0004), acs_state::redirect);
  EXPECT_EQ(acs_from_control(0x0008), acs_state::redirect);
  EXPECT_EQ(acs_from_control(0x0020), acs_state::redirect);
  EXPECT_EQ(acs_from_control(0x0001 | 0x0002 | 0x0010 | 0x0040), acs_state::no_redirect);
}

TEST(PciDetailsTest, LiveReadMatchesHwlocOrNamesLibpciaccess) {
  auto d = read_pci_details();
  if (!d) {
    EXPECT_EQ(d.code(), errc::io_error);
    EXPECT_NE(d.err().message.find("libpciaccess"), std::string::npos);
    return;
  }
  auto t = load_topology_live();
  ASSERT_TRUE(t);
  for (const auto& f : *d) {
    EXPECT_NE(f.vendor_id, 0xffff) << f.address.to_string();
    if (f.acs == acs_state::unknown) {
      EXPECT_FALSE(f.acs_note.empty()) << f.address.to_string();
    }
    // hwloc, keeping every I/O object, sees each function libpciaccess sees.
    EXPECT_TRUE(t->find(f.address).has_value()) << f.address.to_string();
  }
}

}  // namespace
}  // namespace xbuf::p2p
