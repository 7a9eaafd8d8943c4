// How tlctl shows sweeps: trial parameters, the trial table and its best
// mark, a sweep in words, the change log a watch prints off a terminal, the
// table it redraws on one, and the sweep list.
#include "client/sweep_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace tl::client {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;
using ::tl::v1::Job;
using ::tl::v1::Sweep;
using ::tl::v1::SweepSpec;
using ::tl::v1::SweepTrial;

SweepSpec SpecOverThreeFields() {
  SweepSpec spec;
  spec.set_name("lr-search");
  spec.set_method(SweepSpec::ASHA);
  spec.set_seed(7);
  spec.set_max_trials(16);
  spec.set_max_parallel_trials(4);
  spec.set_max_failed_trials(4);
  spec.mutable_asha()->set_min_epochs(1);
  spec.mutable_asha()->set_reduction_factor(3);
  spec.mutable_objective()->set_metric(SweepSpec::Objective::VAL_ACCURACY);
  spec.mutable_objective()->set_direction(SweepSpec::Objective::MAXIMIZE);
  for (const char* field :
       {"training.learning_rate", "training.strategy", "training.unfreeze_groups"}) {
    spec.add_space()->set_field(field);
  }
  return spec;
}

SweepTrial MakeTrial(int index, Job::State state, int epoch = 0) {
  SweepTrial trial;
  trial.set_index(index);
  trial.set_job_id("job-" + std::to_string(index));
  trial.set_state(state);
  trial.set_epoch(epoch);
  auto& values = *trial.mutable_parameters()->mutable_fields();
  // Listed out of the space's order: the view orders them.
  values["training.unfreeze_groups"].set_number_value(index % 3 + 1);
  values["training.strategy"].set_string_value(index % 2 == 0 ? "FINE_TUNE" : "FULL");
  values["training.learning_rate"].set_number_value(0.0031622776601683794);
  return trial;
}

Sweep MakeSweep(int trials) {
  Sweep sweep;
  sweep.set_id("sweep-1");
  sweep.set_owner("ada");
  sweep.set_state(Sweep::RUNNING);
  *sweep.mutable_spec() = SpecOverThreeFields();
  for (int i = 0; i < trials; ++i) *sweep.add_trials() = MakeTrial(i, Job::QUEUED);
  sweep.set_trials_created(trials);
  return sweep;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Where each whitespace-separated token of a line starts.
std::vector<size_t> TokenStarts(const std::string& line) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != ' ' && (i == 0 || line[i - 1] == ' ')) starts.push_back(i);
  }
  return starts;
}

// ---------------------------------------------------------------- parameters and rows

TEST(TrialParametersTest, InTheOrderOfTheSpaceWithShortNamesAndShortNumbers) {
  EXPECT_EQ(TrialParameters(MakeTrial(1, Job::RUNNING), SpecOverThreeFields()),
            "learning_rate=0.003162 strategy=FULL unfreeze_groups=2");
}

TEST(TrialParametersTest, BooleansNestedFieldsAndValuesTheSpaceDoesNotList) {
  SweepSpec spec;
  spec.add_space()->set_field("preprocessing.horizontal_flip");
  SweepTrial trial;
  auto& values = *trial.mutable_parameters()->mutable_fields();
  values["preprocessing.horizontal_flip"].set_bool_value(false);
  values["training.weight_decay"].set_number_value(1e-5);
  values["training.early_stopping.patience"].set_number_value(3);
  EXPECT_EQ(TrialParameters(trial, spec),
            "horizontal_flip=false early_stopping.patience=3 weight_decay=1e-05");
}

TEST(TrialTableTest, RowsLineUpWithTheHeaderAndTheBestIsMarked) {
  Sweep sweep = MakeSweep(0);
  SweepTrial best = MakeTrial(12, Job::SUCCEEDED, 9);
  best.set_objective(0.8125);
  SweepTrial stopped = MakeTrial(3, Job::STOPPED_EARLY, 1);
  stopped.set_objective(0.25);
  SweepTrial queued = MakeTrial(4, Job::QUEUED);
  sweep.set_best_job_id(best.job_id());

  const std::string best_row = TrialTableRow(best, sweep);
  EXPECT_THAT(best_row, StartsWith("*"));
  EXPECT_THAT(best_row, AllOf(HasSubstr(" 12 "), HasSubstr("job-12"), HasSubstr("SUCCEEDED"),
                              HasSubstr(" 9 "), HasSubstr("0.8125"),
                              HasSubstr("learning_rate=0.003162 strategy=FINE_TUNE")));
  EXPECT_THAT(TrialTableRow(stopped, sweep), AllOf(StartsWith(" "), HasSubstr("STOPPED_EARLY")));
  // No objective yet: a dash, not a zero.
  EXPECT_THAT(TrialTableRow(queued, sweep), AllOf(Not(HasSubstr("0.0000")), HasSubstr(" - ")));

  // TRIAL, JOB, STATE, EPOCH, OBJECTIVE end where their headers end (numbers are
  // right-aligned), PARAMETERS starts where its header does.
  const std::string header = TrialTableHeader();
  for (const SweepTrial& trial : {best, stopped}) {
    const std::string row = TrialTableRow(trial, sweep);
    EXPECT_EQ(row.find("job-"), header.find("JOB")) << header << "\n" << row;
    EXPECT_EQ(row.find(Job::State_Name(trial.state())), header.find("STATE"));
    EXPECT_EQ(row.find("learning_rate"), header.find("PARAMETERS"));
  }
  EXPECT_EQ(best_row.find("0.8125") + 6, header.find("OBJECTIVE") + 9);
}

TEST(TrialTableTest, NoTrialIsMarkedBeforeOneSucceeds) {
  Sweep sweep = MakeSweep(3);
  for (const SweepTrial& trial : sweep.trials()) {
    EXPECT_THAT(TrialTableRow(trial, sweep), StartsWith(" "));
  }
}

// ---------------------------------------------------------------- details and summary

TEST(SweepDetailsTest, TheSweepInWordsThenEveryTrial) {
  Sweep sweep = MakeSweep(2);
  sweep.set_state(Sweep::FAILED);
  sweep.set_trials_ended(2);
  sweep.set_failed_trials(2);
  sweep.set_error("2 trials failed; the sweep allows 1");
  const std::string text = SweepDetails(sweep);
  EXPECT_THAT(text, HasSubstr("sweep      sweep-1\n"));
  EXPECT_THAT(text, HasSubstr("name       lr-search\n"));
  EXPECT_THAT(text, HasSubstr("state      FAILED\n"));
  EXPECT_THAT(text, HasSubstr("owner      ada\n"));
  EXPECT_THAT(text, HasSubstr("method     ASHA (rungs from epoch 1, reduction factor 3), seed 7\n"));
  EXPECT_THAT(text, HasSubstr("objective  VAL_ACCURACY, MAXIMIZE\n"));
  EXPECT_THAT(text, HasSubstr("trials     2 created, 2 ended, 2 failed; at most 16, 4 at once, "
                              "fails after 4 failed\n"));
  EXPECT_THAT(text, HasSubstr("error      2 trials failed; the sweep allows 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("best ")));
  // Unset times are dashes, not 1970.
  EXPECT_THAT(text, AllOf(HasSubstr("ended      -\n"), Not(HasSubstr("1970"))));
  EXPECT_THAT(text, HasSubstr("\n" + TrialTableHeader() + "\n" +
                              TrialTableRow(sweep.trials(0), sweep) + "\n" +
                              TrialTableRow(sweep.trials(1), sweep) + "\n"));
}

TEST(SweepDetailsTest, TheBestTrialAndNoTableWithoutTrials) {
  Sweep sweep = MakeSweep(0);
  sweep.mutable_spec()->set_method(SweepSpec::GRID);
  sweep.set_best_job_id("job-5");
  sweep.set_best_objective(0.9);
  const std::string text = SweepDetails(sweep);
  EXPECT_THAT(text, HasSubstr("best       job job-5, objective 0.9000\n"));
  // GRID draws nothing: no seed, no rungs.
  EXPECT_THAT(text, HasSubstr("method     GRID\n"));
  EXPECT_THAT(text, Not(HasSubstr("TRIAL")));
}

TEST(SweepDetailsTest, TheRefitIsNamedAndItsRowSaysSo) {
  Sweep sweep = MakeSweep(2);
  sweep.mutable_spec()->set_refit(true);
  EXPECT_THAT(SweepDetails(sweep),
              HasSubstr("refit      after the search, the best trial's recipe on every training "
                        "image\n"));
  SweepTrial& refit = *sweep.add_trials();
  refit = sweep.trials(0);
  refit.set_index(2);
  refit.set_refit(true);
  refit.set_job_id("job-r");
  refit.clear_objective();
  sweep.set_refit_job_id("job-r");
  const std::string text = SweepDetails(sweep);
  EXPECT_THAT(text, HasSubstr("refit      job job-r: the best trial's recipe"));
  const std::string row = TrialTableRow(refit, sweep);
  EXPECT_THAT(row, HasSubstr("refit  job-r"));
  EXPECT_EQ(row.find("job-r"), TrialTableHeader().find("JOB"));  // still lined up
  EXPECT_THAT(SweepSummaryLine(sweep), HasSubstr(", refit job job-r"));
}

TEST(SweepDetailsTest, ShowsControlCharactersEscaped) {
  Sweep sweep = MakeSweep(1);
  sweep.mutable_spec()->set_name("evil\x1b[2J");
  sweep.set_owner("eve\r");
  sweep.set_error("bad\x07 thing");
  (*sweep.mutable_trials(0)->mutable_parameters()->mutable_fields())["training.strategy"]
      .set_string_value("FULL\nforged line");
  for (const std::string& text : {SweepDetails(sweep), SweepListRow(sweep),
                                  LiveTrialTable(sweep, 5), SweepSummaryLine(sweep)}) {
    EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
    EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
    EXPECT_EQ(text.find('\r'), std::string::npos) << text;
    EXPECT_THAT(text, Not(HasSubstr("\nforged"))) << text;
  }
}

TEST(SweepSummaryLineTest, CountsFailuresAndTheBestSoFar) {
  Sweep sweep = MakeSweep(5);
  sweep.set_trials_ended(3);
  EXPECT_EQ(SweepSummaryLine(sweep), "sweep sweep-1 RUNNING  3 of 16 trials ended");
  sweep.set_failed_trials(1);
  sweep.set_best_job_id("job-2");
  sweep.set_best_objective(0.75);
  EXPECT_EQ(SweepSummaryLine(sweep),
            "sweep sweep-1 RUNNING  3 of 16 trials ended (1 failed), best 0.7500 (job job-2)");
}

TEST(SweepStatesTest, APausedSweepHasNotEnded) {
  for (Sweep::State state : {Sweep::SUCCEEDED, Sweep::FAILED, Sweep::CANCELLED}) {
    EXPECT_TRUE(SweepHasEnded(state)) << Sweep::State_Name(state);
  }
  for (Sweep::State state : {Sweep::RUNNING, Sweep::PAUSED, Sweep::STATE_UNSPECIFIED}) {
    EXPECT_FALSE(SweepHasEnded(state)) << Sweep::State_Name(state);
  }
}

// ---------------------------------------------------------------- a watch off a terminal

TEST(TrialChangeLogTest, PrintsWhatChangedOnceAndNothingForTheSameSweepAgain) {
  TrialChangeLog log;
  Sweep sweep = MakeSweep(2);
  EXPECT_THAT(log.Lines(sweep),
              ElementsAre(SweepSummaryLine(sweep), TrialTableHeader(),
                          TrialTableRow(sweep.trials(0), sweep),
                          TrialTableRow(sweep.trials(1), sweep)));
  // A watch that reconnects gets the sweep as it is: nothing new to print.
  EXPECT_THAT(log.Lines(sweep), IsEmpty());

  // One trial runs an epoch and reports its objective: its row alone, no second header.
  sweep.mutable_trials(1)->set_state(Job::RUNNING);
  EXPECT_THAT(log.Lines(sweep), ElementsAre(TrialTableRow(sweep.trials(1), sweep)));
  sweep.mutable_trials(1)->set_epoch(1);
  sweep.mutable_trials(1)->set_objective(0.5);
  EXPECT_THAT(log.Lines(sweep), ElementsAre(TrialTableRow(sweep.trials(1), sweep)));

  // A new trial, and a trial that becomes the best: their rows, marked as they now are.
  *sweep.add_trials() = MakeTrial(2, Job::QUEUED);
  sweep.mutable_trials(0)->set_state(Job::SUCCEEDED);
  sweep.set_best_job_id(sweep.trials(0).job_id());
  EXPECT_THAT(log.Lines(sweep), ElementsAre(TrialTableRow(sweep.trials(0), sweep),
                                            TrialTableRow(sweep.trials(2), sweep)));
  EXPECT_THAT(TrialTableRow(sweep.trials(0), sweep), StartsWith("*"));

  // The sweep's own state: its summary line.
  sweep.set_state(Sweep::PAUSED);
  EXPECT_THAT(log.Lines(sweep), ElementsAre(SweepSummaryLine(sweep)));
}

// ---------------------------------------------------------------- a watch on a terminal

TEST(LiveTrialTableTest, EveryTrialWhenTheyFit) {
  const Sweep sweep = MakeSweep(3);
  EXPECT_THAT(Lines(LiveTrialTable(sweep, 3)),
              ElementsAre(SweepSummaryLine(sweep), TrialTableHeader(),
                          TrialTableRow(sweep.trials(0), sweep),
                          TrialTableRow(sweep.trials(1), sweep),
                          TrialTableRow(sweep.trials(2), sweep)));
}

TEST(LiveTrialTableTest, UnfinishedAndBestFirstThenTheLatestEnded) {
  Sweep sweep = MakeSweep(10);
  for (int i = 0; i < 10; ++i) sweep.mutable_trials(i)->set_state(Job::STOPPED_EARLY);
  sweep.mutable_trials(1)->set_state(Job::SUCCEEDED);
  sweep.set_best_job_id(sweep.trials(1).job_id());
  sweep.mutable_trials(4)->set_state(Job::RUNNING);
  sweep.mutable_trials(6)->set_state(Job::QUEUED);
  const std::vector<std::string> lines = Lines(LiveTrialTable(sweep, 5));
  // Best (1), running (4), queued (6), then the latest ended (9, 8), by index.
  EXPECT_THAT(lines, ElementsAre(SweepSummaryLine(sweep), TrialTableHeader(),
                                 TrialTableRow(sweep.trials(1), sweep),
                                 TrialTableRow(sweep.trials(4), sweep),
                                 TrialTableRow(sweep.trials(6), sweep),
                                 TrialTableRow(sweep.trials(8), sweep),
                                 TrialTableRow(sweep.trials(9), sweep),
                                 "  (5 ended trials not shown: tlctl sweep get sweep-1)"));
}

TEST(LiveTrialTableTest, NeverMoreRowsThanAskedEvenWhenMoreAreUnfinished) {
  const Sweep sweep = MakeSweep(30);  // all queued
  const std::vector<std::string> lines = Lines(LiveTrialTable(sweep, 20));
  // Summary, header, 20 rows, the line for the rest.
  EXPECT_THAT(lines, SizeIs(23));
  EXPECT_EQ(lines[2], TrialTableRow(sweep.trials(0), sweep));
  EXPECT_THAT(lines.back(), HasSubstr("10 ended trials not shown"));
}

// ---------------------------------------------------------------- list

TEST(SweepListTest, ColumnsLineUpAndMissingFiguresAreDashes) {
  Sweep sweep = MakeSweep(0);
  sweep.mutable_spec()->set_name("a-very-long-sweep-name-that-goes-on-and-on");
  sweep.set_owner("someone-with-a-long-login");
  sweep.set_trials_ended(5);
  const std::string row = SweepListRow(sweep);
  EXPECT_THAT(row, AllOf(HasSubstr("sweep-1"), HasSubstr("RUNNING"), HasSubstr("ASHA"),
                         HasSubstr("5/16"), HasSubstr("a-very-long-sweep-name-t"),
                         Not(HasSubstr("a-very-long-sweep-name-th")), HasSubstr("someone-wi"),
                         Not(HasSubstr("someone-wit")), Not(HasSubstr("1970"))));
  const std::vector<size_t> header_starts = TokenStarts(SweepListHeader());
  const std::vector<size_t> row_starts = TokenStarts(row);
  ASSERT_GE(row_starts.size(), 5u);
  for (size_t column = 0; column < 5; ++column) {
    EXPECT_EQ(row_starts[column], header_starts[column]) << SweepListHeader() << "\n" << row;
  }
  sweep.set_best_objective(0.875);
  EXPECT_THAT(SweepListRow(sweep), HasSubstr("0.8750"));
}

}  // namespace
}  // namespace tl::client
