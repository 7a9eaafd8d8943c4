// How a run ended when nothing went wrong: it finished, or it stopped
// because it was asked to. A cancel stops within a batch (or between images
// while a dataset is decoded); a pause stops after an epoch's checkpoint, and
// a later run resumes from there. Failures are EngineError exceptions
// (errors.h); a stop is no failure, so it is returned, and every stage hands
// it up to the one that called it.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace tl::engine {

struct RunOutcome {
  enum class Kind { kFinished, kCancelled, kPaused };
  Kind kind = Kind::kFinished;
  // Where a stop happened, for people: "stopped on request in epoch 2",
  // "paused after epoch 3". Empty when finished.
  std::string reason;

  bool finished() const { return kind == Kind::kFinished; }
  static RunOutcome Cancelled(std::string reason) {
    return RunOutcome{Kind::kCancelled, std::move(reason)};
  }
  static RunOutcome Paused(std::string reason) {
    return RunOutcome{Kind::kPaused, std::move(reason)};
  }
};

// What a stage makes, or the stop that ended it first.
template <typename T>
class OrStopped {
 public:
  OrStopped(T value) : value_(std::move(value)) {}         // NOLINT: implicit on purpose
  OrStopped(RunOutcome stop) : stop_(std::move(stop)) {}   // NOLINT: a stop, not kFinished

  bool stopped() const { return !value_.has_value(); }
  const RunOutcome& stop() const { return stop_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  RunOutcome stop_;
};

}  // namespace tl::engine
