// `dataset: csv`: data sets listed in a CSV file of `path,label[,label...]` rows naming images,
// slides or feature bags.
#pragma once

#include "ips/example.h"

namespace ips {

// data_dir/train_fname (default train.csv) with rows `path,label[,label...]` (one label column
// per task; a header row starting with `path` is skipped). A path names an image or slide
// (patches read on demand; `tissue` keeps tissue tiles only) or a feature bag (.h5, per-slide
// layout, or FILE.h5#GROUP in the reference layout). Rows whose file cannot be opened are reported
// and left out. Relative paths are taken from the CSV's folder.
DatasetPtr csv_dataset_make(const Config& cfg, const std::string& split);

}  // namespace ips
