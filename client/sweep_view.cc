#include "client/sweep_view.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/job_view.h"
#include "common/text.h"

namespace tl::client {
namespace {

using ::tl::v1::Sweep;
using ::tl::v1::SweepSpec;
using ::tl::v1::SweepTrial;

// Whatever a caller or the server wrote (names, owners, errors, enum names
// sent as strings): control characters shown escaped.
std::string Shown(const std::string& text) { return EscapeControlCharacters(text); }

// A field path without its message: "training.learning_rate" -> "learning_rate",
// "training.early_stopping.patience" -> "early_stopping.patience".
std::string ShortField(const std::string& field) {
  const size_t dot = field.find('.');
  return dot == std::string::npos ? field : field.substr(dot + 1);
}

// A value as a short word: integers whole, other numbers to 4 significant
// digits (enough to tell sampled learning rates apart), enum names and
// booleans as JSON writes them.
std::string ValueText(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      const double number = value.number_value();
      if (std::nearbyint(number) == number && std::abs(number) < 1e15) {
        return absl::StrCat(static_cast<int64_t>(number));
      }
      return absl::StrFormat("%.4g", number);
    }
    case google::protobuf::Value::kStringValue:
      return Shown(value.string_value());
    case google::protobuf::Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    default:
      return "?";
  }
}

std::string ObjectiveText(const SweepTrial& trial) {
  return trial.has_objective() ? absl::StrFormat("%.4f", trial.objective()) : "-";
}

bool IsBest(const SweepTrial& trial, const Sweep& sweep) {
  return !sweep.best_job_id().empty() && trial.job_id() == sweep.best_job_id();
}

std::string MethodText(const SweepSpec& spec) {
  std::string text = SweepSpec::Method_Name(spec.method());
  if (spec.method() == SweepSpec::ASHA) {
    absl::StrAppend(&text, " (rungs from epoch ",
                    spec.asha().has_min_epochs() ? absl::StrCat(spec.asha().min_epochs()) : "-",
                    ", reduction factor ",
                    spec.asha().has_reduction_factor()
                        ? absl::StrCat(spec.asha().reduction_factor())
                        : "-",
                    ")");
  }
  if (spec.method() != SweepSpec::GRID && spec.has_seed()) {
    absl::StrAppend(&text, ", seed ", spec.seed());
  }
  return text;
}

std::string Limit(bool present, int32_t value) {
  return present ? absl::StrCat(value) : "-";
}

}  // namespace

bool SweepHasEnded(Sweep::State state) {
  return state == Sweep::SUCCEEDED || state == Sweep::FAILED || state == Sweep::CANCELLED;
}

std::string TrialParameters(const SweepTrial& trial, const SweepSpec& spec) {
  const auto& values = trial.parameters().fields();
  std::vector<std::string> shown;
  std::vector<std::string> fields_in_space;
  for (const tl::v1::SearchParameter& parameter : spec.space()) {
    auto value = values.find(parameter.field());
    if (value == values.end()) continue;
    fields_in_space.push_back(parameter.field());
    shown.push_back(absl::StrCat(Shown(ShortField(parameter.field())), "=", ValueText(value->second)));
  }
  // A value the space does not list (a spec from a newer server): shown
  // after the others, in the order of its name, so that nothing is hidden.
  std::vector<std::string> others;
  for (const auto& [field, value] : values) {
    bool listed = false;
    for (const std::string& in_space : fields_in_space) listed = listed || in_space == field;
    if (!listed) others.push_back(absl::StrCat(Shown(ShortField(field)), "=", ValueText(value)));
  }
  std::sort(others.begin(), others.end());
  shown.insert(shown.end(), others.begin(), others.end());
  return absl::StrJoin(shown, " ");
}

std::string TrialTableHeader() {
  return absl::StrFormat("  %5s  %-16s  %-13s  %5s  %9s  %s", "TRIAL", "JOB", "STATE", "EPOCH",
                         "OBJECTIVE", "PARAMETERS");
}

std::string TrialTableRow(const SweepTrial& trial, const Sweep& sweep) {
  // The refit trains the best trial's parameters again on every training image.
  return absl::StrFormat("%s %5s  %-16s  %-13s  %5d  %9s  %s", IsBest(trial, sweep) ? "*" : " ",
                         trial.refit() ? "refit" : std::to_string(trial.index()),
                         Shown(trial.job_id()),
                         tl::v1::Job::State_Name(trial.state()), trial.epoch(),
                         ObjectiveText(trial), TrialParameters(trial, sweep.spec()));
}

std::string SweepSummaryLine(const Sweep& sweep) {
  std::string line = absl::StrCat("sweep ", Shown(sweep.id()), " ", Sweep::State_Name(sweep.state()),
                                  "  ", sweep.trials_ended(), " of ",
                                  Limit(sweep.spec().has_max_trials(), sweep.spec().max_trials()),
                                  " trials ended");
  if (sweep.failed_trials() > 0) absl::StrAppend(&line, " (", sweep.failed_trials(), " failed)");
  if (!sweep.best_job_id().empty()) {
    absl::StrAppend(&line, ", best ",
                    sweep.has_best_objective() ? absl::StrFormat("%.4f", sweep.best_objective())
                                               : "-",
                    " (job ", Shown(sweep.best_job_id()), ")");
  }
  if (!sweep.refit_job_id().empty()) {
    absl::StrAppend(&line, ", refit job ", Shown(sweep.refit_job_id()));
  }
  return line;
}

std::string SweepDetails(const Sweep& sweep) {
  const SweepSpec& spec = sweep.spec();
  std::string text = absl::StrCat("sweep      ", Shown(sweep.id()), "\n");
  absl::StrAppend(&text, "name       ", spec.name().empty() ? "-" : Shown(spec.name()), "\n");
  absl::StrAppend(&text, "state      ", Sweep::State_Name(sweep.state()), "\n");
  absl::StrAppend(&text, "owner      ", Shown(sweep.owner()), "\n");
  absl::StrAppend(&text, "method     ", MethodText(spec), "\n");
  absl::StrAppend(&text, "objective  ", SweepSpec::Objective::Metric_Name(spec.objective().metric()),
                  ", ", SweepSpec::Objective::Direction_Name(spec.objective().direction()), "\n");
  absl::StrAppend(&text, "trials     ", sweep.trials_created(), " created, ", sweep.trials_ended(),
                  " ended, ", sweep.failed_trials(), " failed; at most ",
                  Limit(spec.has_max_trials(), spec.max_trials()), ", ",
                  Limit(spec.has_max_parallel_trials(), spec.max_parallel_trials()),
                  " at once, fails after ",
                  Limit(spec.has_max_failed_trials(), spec.max_failed_trials()), " failed\n");
  if (!sweep.best_job_id().empty()) {
    absl::StrAppend(&text, "best       job ", Shown(sweep.best_job_id()),
                    sweep.has_best_objective()
                        ? absl::StrFormat(", objective %.4f", sweep.best_objective())
                        : "",
                    "\n");
  }
  if (spec.refit()) {
    absl::StrAppend(&text, "refit      ",
                    sweep.refit_job_id().empty()
                        ? "after the search, the best trial's recipe on every training image"
                        : absl::StrCat("job ", Shown(sweep.refit_job_id()),
                                       ": the best trial's recipe on every training image"),
                    "\n");
  }
  absl::StrAppend(&text, "created    ", FormatTimestamp(sweep.create_time()), "\n");
  absl::StrAppend(&text, "updated    ", FormatTimestamp(sweep.update_time()), "\n");
  absl::StrAppend(&text, "ended      ", FormatTimestamp(sweep.end_time()), "\n");
  if (!sweep.error().empty()) absl::StrAppend(&text, "error      ", Shown(sweep.error()), "\n");
  if (sweep.trials_size() > 0) {
    absl::StrAppend(&text, "\n", TrialTableHeader(), "\n");
    for (const SweepTrial& trial : sweep.trials()) {
      absl::StrAppend(&text, TrialTableRow(trial, sweep), "\n");
    }
  }
  return text;
}

std::vector<std::string> TrialChangeLog::Lines(const Sweep& sweep) {
  std::vector<std::string> lines;
  if (sweep.state() != state_shown_) {
    state_shown_ = sweep.state();
    lines.push_back(SweepSummaryLine(sweep));
  }
  for (const SweepTrial& trial : sweep.trials()) {
    const TrialShown shown{trial.state(), trial.epoch(), trial.has_objective(), trial.objective(),
                           IsBest(trial, sweep)};
    auto [seen, is_new] = trials_shown_.try_emplace(trial.index(), shown);
    if (!is_new && seen->second == shown) continue;
    seen->second = shown;
    if (!header_shown_) {
      lines.push_back(TrialTableHeader());
      header_shown_ = true;
    }
    lines.push_back(TrialTableRow(trial, sweep));
  }
  return lines;
}

std::string LiveTrialTable(const Sweep& sweep, int max_rows) {
  const int trials = sweep.trials_size();
  // Which trials get a row: every one when they fit; else the unfinished and
  // the best, then the latest ended ones, as many as fit.
  std::vector<bool> shown(trials, trials <= max_rows);
  int rows = 0;
  for (int i = 0; i < trials && trials > max_rows; ++i) {
    const SweepTrial& trial = sweep.trials(i);
    if (rows < max_rows && (!JobHasEnded(trial.state()) || IsBest(trial, sweep))) {
      shown[i] = true;
      ++rows;
    }
  }
  for (int i = trials - 1; i >= 0 && rows < max_rows && trials > max_rows; --i) {
    if (!shown[i]) {
      shown[i] = true;
      ++rows;
    }
  }
  std::string text = absl::StrCat(SweepSummaryLine(sweep), "\n", TrialTableHeader(), "\n");
  int left_out = 0;
  for (int i = 0; i < trials; ++i) {
    if (shown[i]) {
      absl::StrAppend(&text, TrialTableRow(sweep.trials(i), sweep), "\n");
    } else {
      ++left_out;
    }
  }
  if (left_out > 0) {
    absl::StrAppend(&text, "  (", left_out, " ended trials not shown: tlctl sweep get ",
                    Shown(sweep.id()), ")\n");
  }
  return text;
}

std::string SweepListHeader() {
  return absl::StrFormat("%-16s  %-9s  %-24s  %-10s  %-6s  %7s  %9s  %s", "ID", "STATE", "NAME",
                         "OWNER", "METHOD", "TRIALS", "BEST", "CREATED");
}

std::string SweepListRow(const Sweep& sweep) {
  const std::string trials =
      absl::StrCat(sweep.trials_ended(), "/",
                   Limit(sweep.spec().has_max_trials(), sweep.spec().max_trials()));
  const std::string best =
      sweep.has_best_objective() ? absl::StrFormat("%.4f", sweep.best_objective()) : "-";
  return absl::StrFormat("%-16s  %-9s  %-24s  %-10s  %-6s  %7s  %9s  %s", Shown(sweep.id()),
                         Sweep::State_Name(sweep.state()),
                         PrefixUtf8(Shown(sweep.spec().name()), 24),
                         PrefixUtf8(Shown(sweep.owner()), 10),
                         SweepSpec::Method_Name(sweep.spec().method()), trials, best,
                         FormatTimestamp(sweep.create_time()));
}

}  // namespace tl::client
