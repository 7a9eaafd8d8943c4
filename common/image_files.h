// Which files count as images in a dataset folder. Header-only and free of
// dependencies, so that the scheduler (which checks folders before queueing)
// and the engine (which reads them) agree without the engine depending on
// anything but LibTorch.
#pragma once

#include <algorithm>
#include <cctype>
#include <iterator>
#include <string>

namespace tl {

// True for names ending in an image extension OpenCV decodes, in any case:
// .png .jpg .jpeg .bmp .pgm .ppm .pbm .tif .tiff .webp.
inline bool HasImageExtension(const std::string& file_name) {
  static const char* const kExtensions[] = {".png", ".jpg", ".jpeg", ".bmp",  ".pgm",
                                            ".ppm", ".pbm", ".tif",  ".tiff", ".webp"};
  const size_t dot = file_name.find_last_of("./");
  if (dot == std::string::npos || file_name[dot] != '.' || dot == 0 ||
      file_name[dot - 1] == '/') {
    return false;  // no extension, or a hidden name like ".png"
  }
  std::string extension = file_name.substr(dot);
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* known) { return extension == known; });
}

}  // namespace tl
