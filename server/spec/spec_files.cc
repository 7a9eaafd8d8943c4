#include "server/spec/spec_files.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/confined_path.h"
#include "common/image_files.h"
#include "common/status_macros.h"
#include "server/spec/csv_dataset_check.h"
#include "server/spec/spec_errors.h"

namespace tl::server {
namespace {

namespace fs = std::filesystem;
using ::tl::v1::Job;
using ::tl::v1::JobSpec;

// The number of class folders of `dir` that hold at least one image. Stops
// looking inside a class at its first image, so that a large dataset costs
// one directory listing per class.
int CountClassFoldersWithImages(const fs::path& dir) {
  int classes = 0;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_directory() || entry.path().filename().string().front() == '.') continue;
    for (const fs::directory_entry& file : fs::directory_iterator(entry.path(), error)) {
      if (file.is_regular_file() && HasImageExtension(file.path().filename().string())) {
        ++classes;
        break;
      }
    }
  }
  return classes;
}

absl::StatusOr<std::string> CheckImageFolder(const std::string& field, const std::string& path,
                                             int min_classes, const SpecContext& context) {
  absl::StatusOr<ConfinedPath> confined = ConfinePath(context.data_root, path, field);
  if (!confined.ok()) return confined.status();
  if (!fs::is_directory(confined->absolute)) {
    return Invalid(field, absl::StrCat("\"", path, "\": folder ", confined->absolute,
                                       " does not exist"));
  }
  // A class folder may be a symbolic link, but not one that leads out of the data root.
  std::error_code error;
  const fs::path root = fs::weakly_canonical(context.data_root, error);
  for (const fs::directory_entry& entry : fs::directory_iterator(confined->absolute, error)) {
    if (!entry.is_symlink(error)) continue;
    const fs::path target = fs::weakly_canonical(entry.path(), error);
    const fs::path inside = target.lexically_relative(root);
    if (error || inside.empty() || *inside.begin() == "..") {
      return Invalid(field, absl::StrCat("\"", path, "\": class folder ",
                                         entry.path().filename().string(),
                                         " is a symbolic link leading out of the data root"));
    }
  }
  const int classes = CountClassFoldersWithImages(confined->absolute);
  if (classes < min_classes) {
    return Invalid(field, absl::StrCat("\"", path, "\" has ", classes,
                                       " class folder(s) with images; at least ", min_classes,
                                       " are needed (one subfolder of images per class)"));
  }
  return confined->relative;
}

absl::Status CheckManifestFile(const std::string& field, const fs::path& backbone) {
  fs::path manifest = backbone;
  manifest.replace_extension(".json");
  std::ifstream in(manifest);
  if (!in) {
    return Invalid(field, absl::StrCat("backbone ", backbone.string(), " has no manifest ",
                                       manifest.string()));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json parsed = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("format") ||
      parsed["format"] != "tl.backbone.v1") {
    return Invalid(field, absl::StrCat("manifest ", manifest.string(),
                                       " is not a tl.backbone.v1 JSON document"));
  }
  return absl::OkStatus();
}

// The job a spec names as the source of its backbone or model, if the submitter may use it.
// A user gets the same answer for another owner's unshared job as for one that does not exist,
// so that ids of others' jobs cannot be probed.
absl::StatusOr<Job> FindSourceJob(const std::string& field, const std::string& job_id,
                                  const SpecContext& context) {
  absl::StatusOr<Job> source = context.find_job(job_id);
  if (source.ok()) return source;
  if (source.status().code() == absl::StatusCode::kPermissionDenied) {
    return absl::PermissionDeniedError(absl::StrCat(field, ": ", source.status().message()));
  }
  if (source.status().code() != absl::StatusCode::kNotFound) return source.status();
  return Invalid(field, absl::StrCat("\"", job_id, "\" is not a known job"));
}

absl::Status CheckBackbone(JobSpec& spec, const SpecContext& context) {
  tl::v1::BackboneSpec& backbone = *spec.mutable_backbone();
  switch (backbone.source_case()) {
    case tl::v1::BackboneSpec::kPath: {
      absl::StatusOr<ConfinedPath> confined =
          ConfinePath(context.data_root, backbone.path(), "backbone.path");
      if (!confined.ok()) return confined.status();
      if (!fs::is_regular_file(confined->absolute)) {
        return Invalid("backbone.path", absl::StrCat("\"", backbone.path(), "\": file ",
                                                     confined->absolute, " does not exist"));
      }
      absl::Status manifest = CheckManifestFile("backbone.path", confined->absolute);
      if (!manifest.ok()) return manifest;
      backbone.set_path(confined->relative);
      return absl::OkStatus();
    }
    case tl::v1::BackboneSpec::kFromJob: {
      absl::StatusOr<Job> source = FindSourceJob("backbone.from_job", backbone.from_job(), context);
      if (!source.ok()) return source.status();
      if (source->state() != Job::SUCCEEDED || source->result().backbone_path().empty()) {
        // The spec is fine; the job it names is not there yet.
        return absl::FailedPreconditionError(absl::StrCat(
            "backbone.from_job: job ", backbone.from_job(), " is ",
            Job::State_Name(source->state()),
            "; only a SUCCEEDED job has a backbone to start from"));
      }
      // The path came from a worker's report: it is held to the artifact
      // root like any path a user gives.
      absl::StatusOr<ConfinedPath> confined = ConfinePath(
          context.artifact_root, source->result().backbone_path(), "backbone.from_job");
      if (!confined.ok()) return confined.status();
      const fs::path file = confined->absolute;
      if (!fs::is_regular_file(file)) {
        return Invalid("backbone.from_job", absl::StrCat("backbone of job ", backbone.from_job(),
                                                         " is gone from ", file.string()));
      }
      absl::Status manifest = CheckManifestFile("backbone.from_job", file);
      if (!manifest.ok()) return manifest;
      // A sweep's id stands for the job that is its result now; the spec keeps that job, so
      // that assignment finds its backbone and a later refit of the sweep changes nothing.
      backbone.set_from_job(source->id());
      return absl::OkStatus();
    }
    case tl::v1::BackboneSpec::SOURCE_NOT_SET:
      break;
  }
  return Invalid("backbone", "is missing: set backbone.path or backbone.from_job");
}

absl::Status CheckDataset(JobSpec& spec, const SpecContext& context) {
  tl::v1::DatasetSpec& dataset = *spec.mutable_dataset();
  if (!dataset.train_csv().empty()) {
    if (!dataset.train_dir().empty()) {
      return Invalid("dataset.train_csv", "and dataset.train_dir cannot both be set");
    }
    absl::StatusOr<CheckedCsvDataset> train =
        CheckCsvDataset("dataset.train_csv", dataset.train_csv(), 2, context.data_root);
    if (!train.ok()) return train.status();
    dataset.set_train_csv(train->relative);
  } else {
    if (dataset.train_dir().empty()) {
      return Invalid("dataset.train_dir", "is missing (or set dataset.train_csv)");
    }
    absl::StatusOr<std::string> train =
        CheckImageFolder("dataset.train_dir", dataset.train_dir(), 2, context);
    if (!train.ok()) return train.status();
    dataset.set_train_dir(*train);
  }
  if (!dataset.test_dir().empty()) {
    absl::StatusOr<std::string> test =
        CheckImageFolder("dataset.test_dir", dataset.test_dir(), 1, context);
    if (!test.ok()) return test.status();
    dataset.set_test_dir(*test);
  }
  if (!dataset.val_csv().empty()) {
    if (!dataset.val_dir().empty()) {
      return Invalid("dataset.val_csv", "and dataset.val_dir cannot both be set");
    }
    absl::StatusOr<CheckedCsvDataset> val =
        CheckCsvDataset("dataset.val_csv", dataset.val_csv(), 1, context.data_root);
    if (!val.ok()) return val.status();
    dataset.set_val_csv(val->relative);
    return absl::OkStatus();
  }
  if (!dataset.val_dir().empty()) {
    absl::StatusOr<std::string> val =
        CheckImageFolder("dataset.val_dir", dataset.val_dir(), 1, context);
    if (!val.ok()) return val.status();
    dataset.set_val_dir(*val);
  }
  return absl::OkStatus();
}

// Every class a weight is given for must be a class of the training set.
absl::Status CheckClassWeightNames(const JobSpec& spec, const SpecContext& context) {
  if (spec.training().class_weights().empty()) return absl::OkStatus();
  const fs::path train_dir = fs::path(context.data_root) / spec.dataset().train_dir();
  std::set<std::string> csv_classes;
  if (!spec.dataset().train_csv().empty()) {
    absl::StatusOr<CheckedCsvDataset> train =
        CheckCsvDataset("dataset.train_csv", spec.dataset().train_csv(), 2, context.data_root);
    if (!train.ok()) return train.status();
    csv_classes = train->class_names;
  }
  for (const auto& [name, weight] : spec.training().class_weights()) {
    const bool known = spec.dataset().train_csv().empty() ? fs::is_directory(train_dir / name)
                                                          : csv_classes.count(name) > 0;
    if (!known) {
      return Invalid(absl::StrCat("training.class_weights[\"", name, "\"]"),
                     absl::StrCat("names a class that the training set \"",
                                  spec.dataset().train_dir(), spec.dataset().train_csv(),
                                  "\" does not have"));
    }
  }
  return absl::OkStatus();
}

// An evaluation job needs a finished model and one labelled folder; the
// model's own model.json decides the preprocessing and the class names.
absl::Status CheckEvaluation(JobSpec& spec, const SpecContext& context) {
  tl::v1::EvaluateSpec& evaluate = *spec.mutable_evaluate();
  std::string field = "evaluate.model_path";
  if (!evaluate.from_job().empty()) {
    field = "evaluate.from_job";
    absl::StatusOr<Job> source = FindSourceJob(field, evaluate.from_job(), context);
    if (!source.ok()) return source.status();
    if (source->state() != Job::SUCCEEDED || source->result().model_path().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": job ", evaluate.from_job(), " is ",
                       Job::State_Name(source->state()), "; only a SUCCEEDED job has a model"));
    }
    evaluate.set_model_path(source->result().model_path());
  } else if (evaluate.model_path().empty()) {
    return Invalid("evaluate", "names no model: set evaluate.model_path or evaluate.from_job");
  }
  absl::StatusOr<ConfinedPath> model = ConfinePath(context.artifact_root, evaluate.model_path(), field);
  if (!model.ok()) return model.status();
  // A model in a job's folder is that job's output: the same rule as for from_job. Elsewhere in
  // the artifact root (no job's folder) only a submitter who may use every job's outputs goes on.
  // The folder is the one the path resolves into, links followed.
  std::error_code resolve_error;
  const fs::path resolved_root =
      fs::weakly_canonical(fs::absolute(context.artifact_root), resolve_error);
  const fs::path resolved = fs::weakly_canonical(model->absolute, resolve_error)
                                .lexically_relative(resolved_root);
  const std::string job_folder =
      resolved.empty() || resolve_error ? std::string() : resolved.begin()->string();
  absl::StatusOr<Job> owner_job = context.find_job(job_folder);
  if (!owner_job.ok() && owner_job.status().code() == absl::StatusCode::kPermissionDenied) {
    return absl::PermissionDeniedError(absl::StrCat(
        field, ": \"", evaluate.model_path(),
        "\" is not in the folder of a job you may use (", owner_job.status().message(), ")"));
  }
  fs::path info = model->absolute;
  info.replace_extension(".json");
  if (!fs::is_regular_file(model->absolute)) {
    return Invalid(field, absl::StrCat("model ", model->absolute, " does not exist"));
  }
  if (!fs::is_regular_file(info)) {
    return Invalid(field, absl::StrCat("model ", model->absolute, " has no ",
                                       info.filename().string(), " beside it"));
  }
  evaluate.set_model_path(model->relative);
  tl::v1::DatasetSpec& dataset = *spec.mutable_dataset();
  const bool on_test = !dataset.test_dir().empty();
  if (!on_test && dataset.train_dir().empty()) {
    return Invalid("dataset.test_dir", "is missing: an evaluation job needs a labelled folder");
  }
  absl::StatusOr<std::string> folder =
      on_test ? CheckImageFolder("dataset.test_dir", dataset.test_dir(), 1, context)
              : CheckImageFolder("dataset.train_dir", dataset.train_dir(), 1, context);
  if (!folder.ok()) return folder.status();
  if (on_test) {
    dataset.set_test_dir(*folder);
  } else {
    dataset.set_train_dir(*folder);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSpecFiles(JobSpec& spec, const SpecContext& context) {
  if (spec.has_evaluate()) return CheckEvaluation(spec, context);
  TL_RETURN_IF_ERROR(CheckBackbone(spec, context));
  TL_RETURN_IF_ERROR(CheckDataset(spec, context));
  return CheckClassWeightNames(spec, context);
}

}  // namespace tl::server
