// What a spec names on disk, probed at submit: the backbone and its manifest
// (under the data root, or a finished job's under the artifact root), the
// dataset's folders and CSV lists, the classes class weights name, and the
// model an evaluation job evaluates. Paths are confined to their roots and
// stored normalized, relative to them.
#pragma once

#include "absl/status/status.h"
#include "server/spec/spec_context.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

// For a spec whose numbers have passed: the model and labelled folder of an
// evaluation job, else the backbone, the dataset and the class weights' names.
absl::Status CheckSpecFiles(tl::v1::JobSpec& spec, const SpecContext& context);

}  // namespace tl::server
