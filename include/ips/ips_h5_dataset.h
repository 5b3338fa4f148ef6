// `dataset: ips_h5`: the reference implementation's single HDF5 file of feature bags.
#pragma once

#include "ips/example.h"

namespace ips {

// data_dir/train_fname (default train.h5) with a group per slide holding `img` [N, F] and an
// attribute `label`.
DatasetPtr ips_h5_dataset_make(const Config& cfg, const std::string& split);

}  // namespace ips
