// SPDX-License-Identifier: MIT
#include "core/cancel_token.hpp"

namespace xbuf {

void cancel_token::cancel() {
  mutex_lock lock(mutex_);
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  // Wakers run under mutex_ so ~scoped_waker() cannot return while one of
  // them is still touching a waiter (lock order: token mutex -> waiter mutex).
  for (auto& [id, wake] : wakers_) wake();
  wakers_.clear();
}

cancel_token::scoped_waker::scoped_waker(const cancel_token* token, std::function<void()> wake) {
  if (token == nullptr) return;
  // const_cast: a waker is bookkeeping, not a change of the token's
  // observable state (cancelled or not).
  auto* t = const_cast<cancel_token*>(token);
  mutex_lock lock(t->mutex_);
  if (t->cancelled_.load(std::memory_order_acquire)) return;
  id_ = t->next_waker_++;
  t->wakers_.emplace_back(id_, std::move(wake));
  token_ = t;
}

cancel_token::scoped_waker::~scoped_waker() {
  if (token_ == nullptr) return;
  mutex_lock lock(token_->mutex_);
  std::erase_if(token_->wakers_, [this](const auto& w) { return w.first == id_; });
}

}  // namespace xbuf
