// Errors of the training engine. The engine is free of gRPC and abseil (it
// builds on a CUDA machine that has LibTorch alone), so it reports failures
// as exceptions carrying a kind; the worker maps the kind to the job's
// outcome. A cancel or a pause is no failure: it is returned (run_outcome.h).
#pragma once

#include <stdexcept>
#include <string>

namespace tl::engine {

enum class ErrorKind {
  kInvalidArgument,     // the job as given can never work (bad field, bad file)
  kFailedPrecondition,  // found at run time: dataset unusable, loss became NaN
  kInternal,            // a bug or an unexpected library failure
  kUnavailable,         // a data-parallel peer died or could not be reached; a retry may pass
};

class EngineError : public std::runtime_error {
 public:
  EngineError(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

inline EngineError InvalidArgument(const std::string& message) {
  return EngineError(ErrorKind::kInvalidArgument, message);
}
inline EngineError FailedPrecondition(const std::string& message) {
  return EngineError(ErrorKind::kFailedPrecondition, message);
}

}  // namespace tl::engine
