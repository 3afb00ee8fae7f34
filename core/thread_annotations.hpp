// SPDX-License-Identifier: MIT
//
// thread_annotations.hpp - lock rules the compiler checks.
//
// Overview
//   clang's -Wthread-safety reads these attributes and reports, at compile
//   time, a guarded member touched without its lock, a helper called without
//   the lock it requires, or a lock taken twice. Other compilers see nothing.
//   CI builds every library with clang and -Wthread-safety -Werror
//   (scripts/check-thread-safety.sh).
//
// Rules
//   - Every member a mutex guards says so: XBUF_GUARDED_BY(mutex_).
//   - A helper that needs a lock held says XBUF_REQUIRES(lock); one that
//     takes it itself says XBUF_EXCLUDES(lock). The annotation replaces the
//     "_locked" suffix's comment, not the suffix: names still say which lock
//     (see core/mutex.hpp).
//   - XBUF_NO_THREAD_SAFETY_ANALYSIS is for code the analysis cannot follow
//     (a lock handed between functions); each use says why next to it.
#pragma once

#if defined(__clang__)
#define XBUF_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define XBUF_THREAD_ANNOTATION(x)
#endif

#define XBUF_CAPABILITY(name) XBUF_THREAD_ANNOTATION(capability(name))
#define XBUF_SCOPED_CAPABILITY XBUF_THREAD_ANNOTATION(scoped_lockable)
#define XBUF_GUARDED_BY(x) XBUF_THREAD_ANNOTATION(guarded_by(x))
#define XBUF_PT_GUARDED_BY(x) XBUF_THREAD_ANNOTATION(pt_guarded_by(x))
#define XBUF_ACQUIRED_BEFORE(...) XBUF_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define XBUF_ACQUIRED_AFTER(...) XBUF_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define XBUF_REQUIRES(...) XBUF_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define XBUF_ACQUIRE(...) XBUF_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define XBUF_RELEASE(...) XBUF_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define XBUF_TRY_ACQUIRE(...) XBUF_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define XBUF_EXCLUDES(...) XBUF_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define XBUF_ASSERT_CAPABILITY(x) XBUF_THREAD_ANNOTATION(assert_capability(x))
#define XBUF_RETURN_CAPABILITY(x) XBUF_THREAD_ANNOTATION(lock_returned(x))
#define XBUF_NO_THREAD_SAFETY_ANALYSIS XBUF_THREAD_ANNOTATION(no_thread_safety_analysis)
