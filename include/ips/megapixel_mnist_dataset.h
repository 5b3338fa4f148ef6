// `dataset: megapixel_mnist`: the images `ips data megapixel-mnist` wrote, one decoded per get().
#pragma once

#include "ips/example.h"

namespace ips {

// The generated data set in data_dir/<split>/ (labels.csv + PNGs); images are decoded on get().
// Targets follow tasks by task name: majority | max | top (int64 scalar), multi (float [10]).
// Throws ConfigError naming `N` when the image's patch grid does not have N patches, and naming
// `tasks`, `n_class` or `n_chan_in` when those do not fit the data.
DatasetPtr megapixel_mnist_dataset_make(const Config& cfg, const std::string& split);

}  // namespace ips
