// A classifier's weights in a file of their own (checkpoints, the best
// epoch of early stopping): written whole or not at all, read back into a
// model of the same shape.
#pragma once

#include <torch/script.h>

#include <ostream>
#include <string>

namespace tl::engine {

// Saves the module (TorchScript) to `path` atomically (atomic_file.h), so
// that a crash or a full disk never leaves half a file under that name.
void SaveClassifierWeights(torch::jit::Module& classifier, const std::string& path);

// Copies every parameter and buffer of the module saved at `path` into
// `classifier`, on `device`. Throws EngineError(kFailedPrecondition) naming
// the file and the first tensor that is missing or of another shape, before
// anything is copied.
void LoadClassifierWeights(const std::string& path, torch::jit::Module& classifier,
                           const torch::Device& device);

// What an epoch's checkpoint keeps of the model: every parameter that trains
// now and every buffer (BatchNorm statistics), by name. The frozen
// parameters are still what the backbone file holds, and a resumed attempt
// builds its model from that file again, so a head on a frozen ResNet costs
// its own few kilobytes an epoch rather than the whole network. (Staged
// unfreezing only ever unfreezes: what trained once still trains.)
void SaveTrainedTensors(torch::jit::Module& classifier, std::ostream& out);

// Copies what SaveTrainedTensors wrote to `path` into `classifier`, on
// `device`; a whole module (SaveClassifierWeights, checkpoints of earlier
// versions) is read as LoadClassifierWeights reads it. Same errors, before
// anything is copied.
void LoadTrainedTensors(const std::string& path, torch::jit::Module& classifier,
                        const torch::Device& device);

}  // namespace tl::engine
