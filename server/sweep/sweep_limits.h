// The bounds and defaults of a SweepSpec's own fields (sweeps.proto), in one
// place: validation fills and checks them from here, and docs/API.md's
// "Sweeps" section states them.
#pragma once

namespace tl::server {

// Trials of one sweep. A grid larger than this is refused.
inline constexpr int kMaxSweepTrials = 256;
// max_trials of RANDOM and ASHA when unset (GRID: the grid size).
inline constexpr int kDefaultSweepTrials = 16;
// Trials queued or running at once.
inline constexpr int kDefaultParallelTrials = 4;
inline constexpr int kMaxParallelTrials = 64;
// Parameters in one space, and values one parameter may list.
inline constexpr int kMaxSpaceParameters = 16;
inline constexpr int kMaxListedValues = kMaxSweepTrials;
// RANDOM and ASHA draw from this seed when none is given.
inline constexpr unsigned long long kDefaultSweepSeed = 1;
// ASHA: the first rung's epoch, and the factor between rungs (and the share,
// 1/factor, of a rung's trials that go on).
inline constexpr int kDefaultAshaMinEpochs = 1;
inline constexpr int kMaxAshaMinEpochs = 1000;
inline constexpr int kDefaultReductionFactor = 3;
inline constexpr int kMinReductionFactor = 2;
inline constexpr int kMaxReductionFactor = 16;
// Trials compare on validation images: a base spec without a validation set
// or val_fraction holds out this share of its training images.
inline constexpr double kSweepValFraction = 0.2;
// "-trial-255" after the sweep's name must still fit a job's name.
inline constexpr int kTrialNameSuffixCharacters = 12;

}  // namespace tl::server
