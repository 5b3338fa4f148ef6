// The Swedish traffic signs data set (STS, Larsson & Felsberg 2011) as SPEC §2.2 describes it:
// Set1/ and Set2/ with JPEG frames and an annotations.txt each; train = Set1, test = Set2.
#pragma once

#include <string>
#include <vector>

#include "ips/dataset.h"

namespace ips {

// One annotated sign: `VISIBILITY, x_max, y_max, x_min, y_min, TYPE, NAME`.
struct StsSign {
    std::string visibility;  // VISIBLE | BLURRED | SIDE_ROAD | OCCLUDED
    double x_max = 0, y_max = 0, x_min = 0, y_min = 0;
    std::string type, name;  // e.g. SPEED_LIMIT, 70_SIGN
};

struct StsFrame {
    std::string file;              // as written in annotations.txt
    std::vector<StsSign> signs;    // MISC_SIGNS entries left out
};

// Parses annotations.txt. Numbers may carry trailing junk ("404.72l"); a malformed line throws
// std::runtime_error naming the file and line number.
std::vector<StsFrame> sts_annotations_read(const std::string& path);

// The four classes, in label order.
const std::vector<std::string>& sts_classes();  // EMPTY, 50_SIGN, 70_SIGN, 80_SIGN

// The class of a frame, or -1 when the frame is dropped: no sign -> EMPTY (0); no 50/70/80 limit
// among its signs -> dropped; otherwise the limits sorted by visibility (VISIBLE < BLURRED <
// SIDE_ROAD < OCCLUDED), then larger area first, and the first must be VISIBLE.
int sts_frame_label(const StsFrame& frame);

// A kept frame of a split and its class, in annotations.txt order (dropped frames left out).
struct StsLabelledFrame {
    std::string path;  // data_dir/SetK/<file>
    int label = 0;     // index into sts_classes()
};

// The frames of split "train" (data_dir/Set1) or "test" (data_dir/Set2) with their labels, without
// decoding any image. Throws std::runtime_error naming a missing folder or annotations.txt.
std::vector<StsLabelledFrame> sts_split_read(const std::string& data_dir, const std::string& split);

// Data set `traffic_signs`: data_dir/Set1 (train) or Set2 (test). Frames are resized to the
// config's img_size (1200 x 1600 by default), normalised per the config, and in the train split
// augmented (colour jitter 0.1 in brightness, contrast, saturation and hue; random translation up
// to +-100 px, uncovered pixels black), fresh on every get().
DatasetPtr sts_dataset_make(const Config& cfg, const std::string& split);

}  // namespace ips
