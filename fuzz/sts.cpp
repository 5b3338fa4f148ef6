// The traffic-sign annotations (annotations.txt of Set1 / Set2): sts_split_read, which parses the
// file (sts_annotations_read: file name, ';'-separated signs of 7 ','-separated fields, numbers
// with trailing junk) and labels every frame (sts_frame_label: visibility order, area, MISC_SIGNS).
//
// Input: annotations.txt.
#include "fuzz_util.h"
#include "ips/sts.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    file_write("sts/Set1/annotations.txt", data, size);
    try {
        for (const StsLabelledFrame& f : sts_split_read(scratch_dir() + "/sts", "train"))
            if (f.label < 0 || f.label >= int(sts_classes().size()))
                fuzz_fail("sts_split_read kept a frame with label " + std::to_string(f.label));
    } catch (const std::exception& e) {
        note(e);
    }
    return 0;
}
