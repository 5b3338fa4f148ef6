// torch.save files as they arrive: the zip container (libtorch's PyTorchStreamReader), our checks
// around it (magic, records, byte order, storage sizes) and our unpickler, through both public
// entry points: torch_file_read (flattened tensors, with and without a root) and torch_file_load
// (the whole object). Every tensor handed out is touched at both ends of its view.
//
// Input: the file's bytes. fuzz_torch_pickle fuzzes the pickle inside a well-formed archive.
#include "fuzz_util.h"
#include "torch_walk.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    torch_file_check(file_write("model.pt", data, size));
    return 0;
}
