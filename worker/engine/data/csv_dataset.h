// Datasets listed in a CSV file (`path,label` per line, see
// common/csv_manifest.h) instead of a folder per class.
#pragma once

#include <string>

#include "data/image_folder.h"

namespace tl::engine {

// Reads `csv_path`: image paths are relative to the CSV's folder (or
// absolute) and must stay inside `data_root` (the CSV's own folder when
// empty), symbolic links resolved. Class names are the distinct labels in
// byte order, as an image folder's are; samples keep the file's order.
// Throws EngineError(kInvalidArgument) naming `field`, the file and the line.
ImageFolderIndex ReadCsvDataset(const std::string& csv_path, const std::string& data_root,
                                const std::string& field);

}  // namespace tl::engine
