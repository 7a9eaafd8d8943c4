#include "train/distributed.h"

#include <torch/version.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "base/errors.h"
#include "train/epoch_stats.h"
#include "train/trainer.h"

#ifdef TL_WITH_C10D_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TL_WITH_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace tl::engine {

void CheckDistributedOptions(const DistributedOptions& options) {
  if (options.world_size < 1) throw InvalidArgument("distributed.world_size must be at least 1");
  if (options.world_size == 1) return;
  if (options.rank < 0 || options.rank >= options.world_size) {
    throw InvalidArgument("distributed.rank is " + std::to_string(options.rank) +
                          "; it must lie in [0, distributed.world_size)");
  }
  if (options.store_host.empty()) throw InvalidArgument("distributed.store_host is empty");
  if (options.store_port < 1 || options.store_port > 65535) {
    throw InvalidArgument("distributed.store_port must lie in [1, 65535]");
  }
  if (options.local_address.empty()) throw InvalidArgument("distributed.local_address is empty");
  if (options.timeout.count() < 1) throw InvalidArgument("distributed.timeout must be positive");
  if (options.rendezvous_timeout.count() < 1) {
    throw InvalidArgument("distributed.rendezvous_timeout must be positive");
  }
  if (!DistributedTrainingAvailable()) {
    throw InvalidArgument(
        "distributed.world_size is above 1, but this worker was built without c10d Gloo "
        "(install libgloo-dev and rebuild)");
  }
}

#ifdef TL_WITH_C10D_GLOO

bool DistributedTrainingAvailable() { return true; }

namespace {

// LibTorch 2 split backends (Gloo, NCCL) off the process group; their
// collectives kept their names.
#if TORCH_VERSION_MAJOR >= 2
using GroupBackend = c10d::Backend;
#else
using GroupBackend = c10d::ProcessGroup;
#endif

// c10d reports a closed connection or a timeout with a long backtrace; the
// first line says what happened.
[[noreturn]] void ThrowUnavailable(const std::string& what, const std::exception& error,
                                   const DistributedOptions& options) {
  const std::string text = error.what();
  throw EngineError(ErrorKind::kUnavailable,
                    "data-parallel " + what + " failed on rank " + std::to_string(options.rank) +
                        " of " + std::to_string(options.world_size) +
                        " (a peer died, left or did not answer within " +
                        std::to_string(options.timeout.count()) +
                        " ms): " + text.substr(0, text.find('\n')));
}

}  // namespace

class ProcessGroupReplicas::Impl {
 public:
  Impl(const DistributedOptions& options, const torch::Device& device) : options_(options) {
    CheckDistributedOptions(options_);
    try {
      c10d::TCPStoreOptions store_options;
      store_options.port = static_cast<uint16_t>(options_.store_port);
      store_options.isServer = options_.rank == 0;
      store_options.numWorkers = options_.world_size;
      store_options.waitWorkers = true;
      store_options.timeout = options_.rendezvous_timeout;
      auto tcp_store = c10::make_intrusive<c10d::TCPStore>(options_.store_host, store_options);
      store_ = c10::make_intrusive<c10d::PrefixStore>(options_.key_prefix, tcp_store);
#ifdef TL_WITH_C10D_NCCL
      if (device.is_cuda()) {
        auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
        nccl_options->timeout = options_.timeout;
        group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, options_.rank,
                                                             options_.world_size, nccl_options);
        tensor_device_ = device;
        backend_ = "nccl";
        return;
      }
#endif
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(options_.timeout);
      gloo_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(options_.local_address));
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, options_.rank,
                                                           options_.world_size, gloo_options);
    } catch (const EngineError&) {
      throw;
    } catch (const std::exception& error) {
      ThrowUnavailable("rendezvous at " + options_.store_host + ":" +
                           std::to_string(options_.store_port),
                       error, options_);
    }
  }

  const DistributedOptions& options() const { return options_; }
  const torch::Device& tensor_device() const { return tensor_device_; }
  const std::string& backend() const { return backend_; }

  // Starts an all-reduce (sum unless told) of one tensor on tensor_device().
  c10::intrusive_ptr<c10d::Work> StartAllReduce(torch::Tensor& tensor,
                                                c10d::ReduceOp op = c10d::ReduceOp::SUM);
  void Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      work->wait(options_.timeout);
    } catch (const std::exception& error) {
      ThrowUnavailable(what, error, options_);
    }
  }
  void AllReduce(torch::Tensor& tensor, const std::string& what,
                 c10d::ReduceOp op = c10d::ReduceOp::SUM) {
    Wait(Start(what, [&] { return StartAllReduce(tensor, op); }), what);
  }
  void Broadcast(torch::Tensor& tensor, const std::string& what) {
    Wait(Start(what,
               [&] {
                 std::vector<torch::Tensor> tensors{tensor};
                 return group_->broadcast(tensors);
               }),
         what);
  }
  template <typename Launch>
  c10::intrusive_ptr<c10d::Work> Start(const std::string& what, const Launch& launch) {
    try {
      return launch();
    } catch (const std::exception& error) {
      ThrowUnavailable(what, error, options_);
    }
  }

 private:
  DistributedOptions options_;
  torch::Device tensor_device_{torch::kCPU};
  std::string backend_ = "gloo";
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<GroupBackend> group_;
};

c10::intrusive_ptr<c10d::Work> ProcessGroupReplicas::Impl::StartAllReduce(torch::Tensor& tensor,
                                                                         c10d::ReduceOp op) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::AllreduceOptions reduce_options;
  reduce_options.reduceOp = op;
  return group_->allreduce(tensors, reduce_options);
}

ProcessGroupReplicas::ProcessGroupReplicas(const DistributedOptions& options,
                                           const torch::Device& device)
    : impl_(std::make_unique<Impl>(options, device)) {}

ProcessGroupReplicas::~ProcessGroupReplicas() = default;

int ProcessGroupReplicas::rank() const { return impl_->options().rank; }
int ProcessGroupReplicas::world_size() const { return impl_->options().world_size; }
std::string ProcessGroupReplicas::backend() const { return impl_->backend(); }

ReplicaSync::StepStart ProcessGroupReplicas::StartStep(double local_loss_weight,
                                                       int64_t local_images, bool stop) {
  torch::Tensor values = torch::tensor({local_loss_weight, static_cast<double>(local_images),
                                        stop ? 1.0 : 0.0},
                                       torch::kFloat64)
                             .to(impl_->tensor_device());
  impl_->AllReduce(values, "step start");
  values = values.cpu();
  const double* sums = values.data_ptr<double>();
  return {sums[0], sums[1], sums[2] > 0};
}

std::vector<double> ProcessGroupReplicas::SumGradients(const std::vector<torch::Tensor>& parameters,
                                                       const std::vector<double>& extras) {
  torch::NoGradGuard no_grad;
  // Every rank lists the same gradients in the same order: parameters that
  // train this stage, a missing gradient (an empty slice) as zeros.
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& parameter : parameters) {
    if (!parameter.requires_grad()) continue;
    torch::Tensor& grad = const_cast<torch::Tensor&>(parameter).mutable_grad();
    if (!grad.defined()) grad = torch::zeros_like(parameter);
    grads.push_back(grad);
  }
  // Consecutive gradients of one dtype make a bucket of about kBucketBytes;
  // all buckets are in flight at once.
  struct Bucket {
    size_t first = 0;
    size_t end = 0;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const bool new_bucket = buckets.empty() || bytes >= kBucketBytes ||
                            grads[i].scalar_type() != grads[buckets.back().first].scalar_type();
    if (new_bucket) {
      buckets.push_back(Bucket{i, i});
      bytes = 0;
    }
    buckets.back().end = i + 1;
    bytes += grads[i].numel() * static_cast<int64_t>(grads[i].element_size());
  }
  for (Bucket& bucket : buckets) {
    std::vector<torch::Tensor> pieces;
    for (size_t i = bucket.first; i < bucket.end; ++i) {
      pieces.push_back(grads[i].reshape(-1).to(impl_->tensor_device()));
    }
    bucket.flat = torch::cat(pieces);
    bucket.work = impl_->Start("gradient all-reduce",
                               [&] { return impl_->StartAllReduce(bucket.flat); });
  }
  torch::Tensor extra_sums =
      torch::tensor(extras, torch::kFloat64).to(impl_->tensor_device());
  auto extras_work =
      impl_->Start("step metrics all-reduce", [&] { return impl_->StartAllReduce(extra_sums); });
  for (Bucket& bucket : buckets) {
    impl_->Wait(bucket.work, "gradient all-reduce");
    int64_t offset = 0;
    for (size_t i = bucket.first; i < bucket.end; ++i) {
      const int64_t count = grads[i].numel();
      grads[i].copy_(bucket.flat.narrow(0, offset, count).view(grads[i].sizes()));
      offset += count;
    }
  }
  impl_->Wait(extras_work, "step metrics all-reduce");
  extra_sums = extra_sums.cpu();
  return std::vector<double>(extra_sums.data_ptr<double>(),
                             extra_sums.data_ptr<double>() + extra_sums.numel());
}

void ProcessGroupReplicas::BroadcastTensors(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& tensor : tensors) {
    torch::Tensor copy = tensor.to(impl_->tensor_device()).contiguous();
    impl_->Broadcast(copy, "buffer broadcast");
    const_cast<torch::Tensor&>(tensor).copy_(copy);
  }
}

void ProcessGroupReplicas::SumEvaluation(EvaluationStats& stats) {
  const int64_t classes = stats.confusion.num_classes();
  const double images = static_cast<double>(stats.images);
  std::vector<double> values = {stats.loss * images, stats.accuracy * images,
                                stats.top_k_accuracy * images, images};
  for (const std::vector<int64_t>& row : stats.confusion.counts()) {
    for (int64_t count : row) values.push_back(static_cast<double>(count));
  }
  torch::Tensor sums = torch::tensor(values, torch::kFloat64).to(impl_->tensor_device());
  impl_->AllReduce(sums, "evaluation all-reduce");
  sums = sums.cpu();
  const double* sum = sums.data_ptr<double>();
  // The confusion matrix again, from the summed counts: true class i,
  // predicted class j, counts[i * classes + j] times.
  const torch::Tensor counts =
      sums.narrow(0, 4, classes * classes).round().to(torch::kInt64);
  const torch::Tensor cells = torch::arange(classes * classes, torch::kInt64);
  const torch::Tensor labels = cells.div(classes, "floor").repeat_interleave(counts);
  const torch::Tensor predictions = cells.remainder(classes).repeat_interleave(counts);
  ConfusionMatrix confusion(classes);
  confusion.Add(predictions, labels);
  stats.images = confusion.total();
  const double total = std::max<double>(1.0, static_cast<double>(stats.images));
  stats.loss = stats.images > 0 ? sum[0] / total : 0.0;
  stats.accuracy = confusion.accuracy();
  stats.top_k_accuracy = stats.images > 0 ? std::round(sum[2]) / total : 0.0;
  stats.macro_precision = confusion.macro_precision();
  stats.macro_recall = confusion.macro_recall();
  stats.macro_f1 = confusion.macro_f1();
  stats.confusion = std::move(confusion);
}

void ProcessGroupReplicas::AgreeOnEpoch(EpochStats& stats) {
  torch::Tensor shared =
      torch::tensor(RankZeroEpochFigures(stats), torch::kFloat64).to(impl_->tensor_device());
  impl_->Broadcast(shared, "epoch figures broadcast");
  shared = shared.cpu();
  const double* first = shared.data_ptr<double>();
  SetRankZeroEpochFigures(std::vector<double>(first, first + shared.numel()), stats);
}

void ProcessGroupReplicas::BroadcastBytes(std::string& bytes) {
  torch::Tensor size =
      torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64).to(impl_->tensor_device());
  impl_->Broadcast(size, "state size broadcast");
  const int64_t count = size.cpu().item<int64_t>();
  torch::Tensor data = torch::zeros({count}, torch::kUInt8);
  if (rank() == 0 && count > 0) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), count);
  data = data.to(impl_->tensor_device());
  impl_->Broadcast(data, "state broadcast");
  data = data.cpu();
  bytes.assign(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), count);
}

bool ProcessGroupReplicas::AnyRank(bool flag) {
  torch::Tensor value = torch::tensor({flag ? 1.0 : 0.0}, torch::kFloat64).to(impl_->tensor_device());
  impl_->AllReduce(value, "flag all-reduce", c10d::ReduceOp::MAX);
  return value.cpu().item<double>() > 0;
}

#else  // no c10d Gloo in this build

bool DistributedTrainingAvailable() { return false; }

class ProcessGroupReplicas::Impl {};

ProcessGroupReplicas::ProcessGroupReplicas(const DistributedOptions& options,
                                           const torch::Device&) {
  CheckDistributedOptions(options);
}
ProcessGroupReplicas::~ProcessGroupReplicas() = default;
int ProcessGroupReplicas::rank() const { return 0; }
int ProcessGroupReplicas::world_size() const { return 1; }
std::string ProcessGroupReplicas::backend() const { return "none"; }
ReplicaSync::StepStart ProcessGroupReplicas::StartStep(double, int64_t, bool) { return {}; }
std::vector<double> ProcessGroupReplicas::SumGradients(const std::vector<torch::Tensor>&,
                                                       const std::vector<double>& extras) {
  return extras;
}
void ProcessGroupReplicas::BroadcastTensors(const std::vector<torch::Tensor>&) {}
void ProcessGroupReplicas::SumEvaluation(EvaluationStats&) {}
void ProcessGroupReplicas::AgreeOnEpoch(EpochStats&) {}
void ProcessGroupReplicas::BroadcastBytes(std::string&) {}
bool ProcessGroupReplicas::AnyRank(bool flag) { return flag; }

#endif

}  // namespace tl::engine
