// The confusion matrix of an evaluation report as a PNG for people: a grid
// with true classes down the side and predicted classes along the bottom,
// each cell coloured by its share of the row (so that rare classes show as
// clearly as common ones) and labelled with its count.
#pragma once

#include <string>

#include "eval/evaluation_report.h"

namespace tl::engine {

// Cells shrink as classes grow; counts are written while they fit (about 40
// classes), names up to kMaxLabelChars characters. Throws
// EngineError(kInternal) when the file cannot be written.
void DrawConfusionMatrix(const EvaluationReport& report, const std::string& png_path);

constexpr size_t kMaxLabelChars = 24;

}  // namespace tl::engine
