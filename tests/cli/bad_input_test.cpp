// Bad input, counted: one table of damaged, malformed or misplaced inputs, each run
// through the ips binary as a user would. Every case must end with an exit code in 1..127 (an
// error, not a crash or a signal), a message naming the file or the config key at fault, and no
// partial output: the case's folder holds exactly what it held before the run. Inputs are made in
// a fresh folder per case from real files (the Aperio slide, PNG/JPEG/TIFF written by libvips,
// checkpoints written by ips, feature bags written by h5py) and then damaged.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <set>

#include "io/test_images.h"
#include "ips/checkpoint.h"
#include "ips/config.h"
#include "ips/image_io.h"
#include "ips/safetensors.h"
#include "ips/slide.h"
#include "ips/torch_file.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

// What a case's make step gets: its fresh folder (the inputs, and where outputs would go) and a
// scratch folder outside it (helper scripts), so that only the inputs are in the snapshot.
struct Scene {
    fs::path dir, scratch;
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

// ---- making and damaging files ------------------------------------------------------------------

std::string bytes_of(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void bytes_write(const fs::path& p, const std::string& bytes) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
}

// Keeps the first `fraction` of the file: what an interrupted copy or download leaves.
void truncate_to(const fs::path& p, double fraction) {
    fs::resize_file(p, static_cast<uintmax_t>(double(fs::file_size(p)) * fraction));
}

// Overwrites `count` bytes from `offset` (negative: from the end) with `value`.
void overwrite(const fs::path& p, int64_t offset, size_t count, char value) {
    std::string b = bytes_of(p);
    const size_t at = offset >= 0 ? size_t(offset) : b.size() - size_t(-offset);
    for (size_t k = at; k < at + count && k < b.size(); ++k) b[k] = value;
    bytes_write(p, b);
}

// Nothing may read it. chmod 000 is that for ordinary users; root reads past permissions, so there
// a UNIX socket stands in: it exists, yet open() fails for everyone (ENXIO).
void unreadable(const fs::path& p) {
    if (::geteuid() != 0) {
        if (!fs::exists(p)) bytes_write(p, "x");
        fs::permissions(p, fs::perms::none);
        return;
    }
    fs::remove(p);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    ASSERT_LT(p.string().size(), sizeof a.sun_path) << p;
    std::strcpy(a.sun_path, p.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << p << ": " << std::strerror(errno);
    ::close(fd);  // the socket file stays
}

// A grey 64 x 80 image (tiny_grey.yaml's size) as PNG, and in colour in any format libvips saves.
void png_make(const fs::path& p) { ips::png_write(p.string(), ips::test::pattern_image(64, 80).narrow(0, 0, 1)); }
void vips_make(const fs::path& p) { ips::test::vips_write(ips::test::pattern_image(64, 80), p.string()); }

// A checkpoint of the model a config describes, with random weights.
ips::IPSNet net_of(const std::string& yaml) {
    const ips::Config cfg = ips::config_load(kDir + "/tests/fixtures/" + yaml);
    return ips::net_make(cfg.model, cfg.compute, cfg.seed);
}
void checkpoint_make(const fs::path& p, const std::string& yaml) {
    ips::IPSNet net = net_of(yaml);
    ips::checkpoint_save(p.string(), net, nullptr, {});
}

// The model's state dict in the reference layout (what `--weights` takes), edited by `edit`.
void state_dict_make(const fs::path& p, const std::string& yaml, const std::function<void(ips::NamedTensors&)>& edit) {
    ips::IPSNet net = net_of(yaml);
    ips::NamedTensors sd = ips::state_dict_of(*net);
    edit(sd);
    ips::torch_file_write(p.string(), sd);
}

// Runs h5py code with `d` (the case folder), `good` (20 x 32 float32 features) and
// `bag(path, features)` (a CLAM-style bag: features, coords and their patch attributes) defined.
void h5py_run(const Scene& s, const std::string& body) {
    const fs::path script = s.scratch / "make_h5.py";
    bytes_write(script,
                "import sys, h5py, numpy as np\n"
                "d = sys.argv[1]\n"
                "def bag(path, features):\n"
                "    with h5py.File(path, 'w') as f:\n"
                "        f['features'] = features\n"
                "        c = f.create_dataset('coords', data=np.arange(2 * len(features)).reshape(-1, 2))\n"
                "        c.attrs['patch_size'] = 256\n"
                "        c.attrs['patch_level'] = 0\n"
                "good = np.random.RandomState(0).rand(20, 32).astype(np.float32)\n" +
                    body);
    const auto r = ips::test::command_run(ips::test::torch_python() + " " + script.string() + " " + s.dir.string());
    ASSERT_EQ(r.code, 0) << r.output << "\n(python3-h5py and python3-numpy: scripts/setup.sh installs them)";
}

// A feature-bag data set: test.csv (what `eval` reads) with these rows, and a checkpoint for
// bags_tiny.yaml beside it.
void bag_split(const Scene& s, const std::string& rows) {
    checkpoint_make(s / "w.pt", "bags_tiny.yaml");
    bytes_write(s / "test.csv", rows);
}

// An image data set for tiny_grey.yaml (tasks: kind, 3 classes softmax; tags, 3 classes sigmoid).
void image_split(const Scene& s, const std::string& rows) {
    checkpoint_make(s / "w.pt", "tiny_grey.yaml");
    png_make(s / "img.png");
    bytes_write(s / "test.csv", rows);
}

// IDX files (MNIST's format): big-endian dimensions after a magic of 0, 0, type 0x08, rank.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& payload, uint8_t type = 0x08) {
    std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
    for (uint32_t d : dims)
        for (int sh = 24; sh >= 0; sh -= 8) out.push_back(static_cast<char>((d >> sh) & 0xff));
    return out + payload;
}

// Ten 28 x 28 digits, one per class, for both splits, as IDX files under `d/digits`.
void digits_make(const Scene& s) {
    std::string labels;
    for (char c = 0; c < 10; ++c) labels.push_back(c);
    std::string pixels(10 * 784, '\0');
    for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = char((k * 7) % 251);
    for (const char* split : {"train", "t10k"}) {
        bytes_write(s.dir / "digits" / (std::string(split) + "-images-idx3-ubyte"), idx_bytes({10, 28, 28}, pixels));
        bytes_write(s.dir / "digits" / (std::string(split) + "-labels-idx1-ubyte"), idx_bytes({10}, labels));
    }
}

void gzip_write(const fs::path& p, const std::string& bytes) {
    gzFile f = gzopen(p.c_str(), "wb");
    ASSERT_TRUE(f) << p;
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
}

void svs_copy(const fs::path& p) {
    ASSERT_TRUE(fs::exists(ips::test::test_slide_path())) << ips::test::test_slide_path();
    fs::copy_file(ips::test::test_slide_path(), p);
}

// Where the Aperio file keeps things (CMU-1-Small-Region.svs): JPEG tiles of its one level from
// byte 16 to its directory at 1,275,950; thumbnail, label and macro images after that.
constexpr int64_t kSvsLevel0Directory = 1275950;

// A fixture config's text, to append bad lines to.
std::string fixture_text(const std::string& yaml) { return bytes_of(kDir + "/tests/fixtures/" + yaml); }

// ---- the table ----------------------------------------------------------------------------------

// In `command`, `names` and `also`: {d} is the case's folder, {svs} the real slide (read, never
// written), {grey} {syn} {bags} {feat} the fixture configs ({vit}: features_vit.yaml with a
// one-block Kaiko ViT-S), {cpu} the runtime options, and
// {eval-bags} {eval-syn} {predict} the commands most cases share.
struct BadInputCase {
    const char* name;
    void (*make)(const Scene&);
    const char* command;
    const char* names;  // what stderr must contain: the file's path or the config key
    const char* also;   // and, unless null, this (the problem, in words)
};

void nothing(const Scene&) {}

// A feature-bag data set whose one row is bag.h5, written by this h5py code.
void bag_by_h5py(const Scene& s, const std::string& code) {
    bag_split(s, "bag.h5,1\n");
    h5py_run(s, code);
}

// tiny_grey.yaml's weights beside an image x.<ext> written by libvips.
void image_with_weights(const Scene& s, const std::string& ext) {
    checkpoint_make(s / "w.pt", "tiny_grey.yaml");
    if (ext == "png") png_make(s.dir / "x.png");
    else vips_make(s.dir / ("x." + ext));
}

const char* const kMegapixel =
    "data megapixel-mnist --digits {d}/digits --out {d}/mm --width 96 --height 96 --n-train 2 --n-test 1 --threads 1";

const BadInputCase kCases[] = {
    // ---- configs: rejected before the run folder exists ----
    {"ConfigMissing", nothing, "train {d}/absent.yaml {cpu} --out {d}/run", "{d}/absent.yaml", nullptr},
    {"ConfigIsDirectory", [](const Scene& s) { fs::create_directory(s.dir / "cfg.yaml"); },
     "train {d}/cfg.yaml {cpu} --out {d}/run", "{d}/cfg.yaml", "is a directory"},
    {"ConfigUnreadable", [](const Scene& s) { unreadable(s.dir / "cfg.yaml"); },
     "train {d}/cfg.yaml {cpu} --out {d}/run", "{d}/cfg.yaml", nullptr},
    {"ConfigNotYaml", [](const Scene& s) { bytes_write(s / "cfg.yaml", "n_epoch: [1, 2\nB: 4\n"); },
     "train {d}/cfg.yaml {cpu} --out {d}/run", "{d}/cfg.yaml", "not valid YAML"},
    {"ConfigNotUtf8", [](const Scene& s) { bytes_write(s / "cfg.yaml", fixture_text("tiny_synthetic.yaml") + "\xff\xfe: 1\n"); },
     "train {d}/cfg.yaml {cpu} --out {d}/run", "{d}/cfg.yaml", nullptr},
    {"ConfigUnknownKey", [](const Scene& s) { bytes_write(s / "cfg.yaml", fixture_text("tiny_synthetic.yaml") + "colour: blue\n"); },
     "train {d}/cfg.yaml {cpu} --out {d}/run", "'colour'", "{d}/cfg.yaml"},
    {"ConfigIntegerIsText", nothing, "train {syn} --set B=eight {cpu} --out {d}/run", "'B'", nullptr},
    {"ConfigZeroPatchSize", nothing, "train {syn} --set patch_size=0 {cpu} --out {d}/run", "'patch_size'", nullptr},
    {"ConfigNegativeImageSize", nothing, "train {syn} --set 'img_size=[-64, 64]' {cpu} --out {d}/run", "'img_size'",
     nullptr},
    {"ConfigPatchLargerThanImage", nothing,
     "train {syn} --set patch_size=128 --set patch_stride=128 {cpu} --out {d}/run", "'patch_size'",
     "larger than the image"},
    {"ConfigMemoryLargerThanN", nothing, "train {syn} --set M=17 {cpu} --out {d}/run", "'M'", nullptr},

    // ---- CSV data sets (eval reads test.csv) ----
    {"CsvEmpty", [](const Scene& s) { bag_split(s, ""); }, "{eval-bags}", "{d}/test.csv", "no rows"},
    {"CsvIsDirectory", [](const Scene& s) { bag_split(s, ""); fs::remove(s.dir / "test.csv"); fs::create_directory(s.dir / "test.csv"); },
     "{eval-bags}", "{d}/test.csv", "is a directory"},
    {"CsvMissing", [](const Scene& s) { checkpoint_make(s / "w.pt", "bags_tiny.yaml"); },
     "{eval-bags}", "{d}/test.csv", "'test_fname'"},
    {"CsvUnknownLabel", [](const Scene& s) { bag_by_h5py(s, "bag(d + '/bag.h5', good)"); bytes_write(s / "test.csv", "path,label\nbag.h5,3\n"); },
     "{eval-bags}", "{d}/test.csv:2", "label 3"},
    {"CsvClassOutOfRange", [](const Scene& s) { image_split(s, "img.png,5,0\n"); },
     "eval {grey} --set dataset=csv --set data_dir={d} --checkpoint {d}/w.pt {cpu}", "{d}/test.csv:1", "label 5"},
    {"CsvNamesMissingFile", [](const Scene& s) { bag_split(s, "gone.h5,1\n"); }, "{eval-bags}", "{d}/gone.h5", nullptr},
    {"CsvNamesImageForBagConfig", [](const Scene& s) { bag_split(s, "img.png,1\n"); png_make(s.dir / "img.png"); },
     "{eval-bags}", "'is_image'", "{d}/test.csv:1"},

    // ---- HDF5 feature bags (test.csv lists bag.h5) ----
    {"BagNotHdf5", [](const Scene& s) { bag_split(s, "bag.h5,1\n"); bytes_write(s / "bag.h5", "not HDF5"); },
     "{eval-bags}", "{d}/bag.h5", "not an HDF5 file"},
    {"BagTruncated", [](const Scene& s) { bag_by_h5py(s, "bag(d + '/bag.h5', good)"); truncate_to(s.dir / "bag.h5", 0.5); },
     "{eval-bags}", "{d}/bag.h5", nullptr},
    {"BagWithoutFeatures", [](const Scene& s) { bag_by_h5py(s, "h5py.File(d + '/bag.h5', 'w')['feats'] = good"); },
     "{eval-bags}", "{d}/bag.h5", "'features'"},
    {"BagIntegerFeatures", [](const Scene& s) { bag_by_h5py(s, "bag(d + '/bag.h5', (good * 100).astype(np.int32))"); },
     "{eval-bags}", "{d}/bag.h5", "dtype"},
    {"BagFeatureWidthNotTheConfigs", [](const Scene& s) { bag_by_h5py(s, "bag(d + '/bag.h5', good[:, :16])"); },
     "{eval-bags}", "{d}/bag.h5", "n_chan_in"},
    {"BagWithoutRows", [](const Scene& s) { bag_by_h5py(s, "bag(d + '/bag.h5', good[:0])"); },
     "{eval-bags}", "{d}/bag.h5", "no rows"},
    {"ReferenceFileEmptyGroup", [](const Scene& s) {
         checkpoint_make(s / "w.pt", "bags_tiny.yaml");
         h5py_run(s, "g = h5py.File(d + '/test.h5', 'w').create_group('slide_1')\ng['img'] = good[:0]\ng.attrs['label'] = 1");
     },
     "eval {bags} --set dataset=ips_h5 --set data_dir={d} --checkpoint {d}/w.pt {cpu}", "{d}/test.h5", "no rows"},

    // ---- checkpoints and weights (eval on synthetic data reads nothing else) ----
    {"CheckpointIsDirectory", [](const Scene& s) { fs::create_directory(s.dir / "w.pt"); }, "{eval-syn}", "{d}/w.pt",
     "is a directory"},
    {"CheckpointUnreadable", [](const Scene& s) { checkpoint_make(s / "w.pt", "tiny_synthetic.yaml"); unreadable(s.dir / "w.pt"); },
     "{eval-syn}", "{d}/w.pt", nullptr},
    {"CheckpointTruncatedZip", [](const Scene& s) { checkpoint_make(s / "w.pt", "tiny_synthetic.yaml"); truncate_to(s.dir / "w.pt", 0.5); },
     "{eval-syn}", "{d}/w.pt", nullptr},
    {"CheckpointPickleDamaged", [](const Scene& s) {
         checkpoint_make(s / "w.pt", "tiny_synthetic.yaml");
         // The pickle is the first record: its bytes follow the 30-byte local header, the record
         // name and the padding ("extra") field that aligns the data.
         const std::string b = bytes_of(s.dir / "w.pt");
         const auto u16 = [&](size_t at) { return size_t(uint8_t(b[at])) | size_t(uint8_t(b[at + 1])) << 8; };
         overwrite(s.dir / "w.pt", int64_t(30 + u16(26) + u16(28)) + 2, 40, '\xff');
     },
     "{eval-syn}", "{d}/w.pt", nullptr},
    {"StateDictMissingKey", [](const Scene& s) {
         state_dict_make(s.dir / "w.pt", "tiny_synthetic.yaml", [](ips::NamedTensors& sd) {
             // Any parameter but a BatchNorm step counter (PyTorch itself tolerates those missing).
             sd.erase(std::find_if(sd.begin(), sd.end(), [](const auto& kv) { return kv.first.find("num_batches") == std::string::npos; }));
         });
     },
     "{eval-syn}", "{d}/w.pt", "missing"},
    {"StateDictExtraKey", [](const Scene& s) {
         state_dict_make(s.dir / "w.pt", "tiny_synthetic.yaml",
                         [](ips::NamedTensors& sd) { sd.emplace_back("head.extra.weight", torch::ones({3})); });
     },
     "{eval-syn}", "{d}/w.pt", "head.extra.weight"},
    {"StateDictMisShapedKey", [](const Scene& s) {
         state_dict_make(s.dir / "w.pt", "tiny_synthetic.yaml",
                         [](ips::NamedTensors& sd) { sd[0].second = torch::zeros({sd[0].second.numel() + 1}); });
     },
     "{eval-syn}", "{d}/w.pt", "shape mismatch"},
    {"CheckpointWithoutModel", [](const Scene& s) {
         c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
         root.insert(std::string("format"), std::string("ips-checkpoint-v2"));
         root.insert(std::string("epoch"), int64_t(1));
         root.insert(std::string("step"), int64_t(3));
         ips::torch_file_write_value(s / "w.pt", root);
     },
     "{eval-syn}", "{d}/w.pt", "'model'"},
    {"CheckpointNotUtf8Name", [](const Scene& s) { checkpoint_make(s / "w\xff.pt", "tiny_synthetic.yaml"); truncate_to(s.dir / "w\xff.pt", 0.3); },
     "eval {syn} --checkpoint '{d}/w\xff.pt' {cpu}", "{d}/w\xff.pt", nullptr},
    // A requeued job resuming from a cut last.pt: the run folder stays as it was (train writes the
    // same config.yaml again, byte for byte, which the snapshot does not count as a change).
    {"ResumeFromTruncatedCheckpoint", [](const Scene& s) {
         const ips::Config cfg = ips::config_load(kDir + "/tests/fixtures/tiny_synthetic.yaml");
         bytes_write(s.dir / "run" / "config.yaml", ips::config_to_yaml(cfg));
         bytes_write(s.dir / "run" / "metrics.jsonl", "{\"epoch\": 1}\n");
         checkpoint_make(s.dir / "run" / "last.pt", "tiny_synthetic.yaml");
         truncate_to(s.dir / "run" / "last.pt", 0.4);
     },
     "train {syn} --resume --quiet {cpu} --out {d}/run", "{d}/run/last.pt", nullptr},
    // Starting weights and data are checked before the run folder is made. These two need
    // src/run/train.cpp to write config.yaml only after opening them (issue 15's report).
    {"TrainWeightsMisShaped", [](const Scene& s) { checkpoint_make(s / "w.pt", "tiny_grey.yaml"); },
     "train {syn} --weights {d}/w.pt --quiet {cpu} --out {d}/run", "{d}/w.pt", "does not fit"},
    {"TrainCsvEmpty", [](const Scene& s) { bytes_write(s / "train.csv", ""); bytes_write(s / "test.csv", ""); },
     "train {bags} --set data_dir={d} --quiet {cpu} --out {d}/run", "{d}/train.csv", "no rows"},
    {"EncoderWeightsMisShaped", [](const Scene& s) { ips::torch_file_write(s / "enc.pt", {{"conv1.weight", torch::zeros({16, 3, 3, 3})}}); },
     "features {feat} {svs} --set encoder_weights={d}/enc.pt {cpu} --out {d}/bags", "{d}/enc.pt", "conv1.weight"},
    // A ViT's weight file as users have them (docs/ENCODERS.md): another model's, safetensors cut
    // short or with a header past the file, and a torch.save file older than PyTorch 1.6.
    {"VitWeightsOfAnotherModel", [](const Scene& s) {
         ips::safetensors_write(s / "w.safetensors", {{"patch_embed.proj.weight", torch::zeros({8, 3, 16, 16})}});
     },
     "features {vit} {svs} --weights {d}/w.safetensors {cpu} --out {d}/bags", "{d}/w.safetensors", "patch_embed.proj.weight"},
    {"SafetensorsTruncated", [](const Scene& s) {
         ips::safetensors_write(s / "w.safetensors", {{"cls_token", torch::zeros({1, 1, 384})}});
         truncate_to(s.dir / "w.safetensors", 0.6);
     },
     "features {vit} {svs} --weights {d}/w.safetensors {cpu} --out {d}/bags", "{d}/w.safetensors", nullptr},
    {"SafetensorsHeaderPastTheFile", [](const Scene& s) { bytes_write(s / "w.safetensors", std::string("\xff\xff\x00\x00\x00\x00\x00\x00{}", 10)); },
     "features {vit} {svs} --weights {d}/w.safetensors {cpu} --out {d}/bags", "{d}/w.safetensors", nullptr},
    {"TorchFileLegacyFormat", [](const Scene& s) { bytes_write(s / "w.bin", std::string("\x80\x02", 2) + "an old pickle"); },
     "features {vit} {svs} --weights {d}/w.bin {cpu} --out {d}/bags", "{d}/w.bin", "legacy"},

    // ---- images (predict; --out is where its records would go) ----
    {"PngTruncated", [](const Scene& s) { image_with_weights(s, "png"); truncate_to(s.dir / "x.png", 0.5); },
     "{predict} {d}/x.png", "{d}/x.png", nullptr},
    {"PngCorruptData", [](const Scene& s) { image_with_weights(s, "png"); overwrite(s.dir / "x.png", 200, 64, '\x5a'); },
     "{predict} {d}/x.png", "{d}/x.png", nullptr},
    {"JpegTruncated", [](const Scene& s) { image_with_weights(s, "jpg"); truncate_to(s.dir / "x.jpg", 0.5); },
     "{predict} {d}/x.jpg", "{d}/x.jpg", nullptr},
    {"JpegCorruptScan", [](const Scene& s) { image_with_weights(s, "jpg"); overwrite(s.dir / "x.jpg", -400, 200, '\xff'); },
     "{predict} {d}/x.jpg", "{d}/x.jpg", nullptr},
    {"TiffTruncated", [](const Scene& s) { image_with_weights(s, "tif"); truncate_to(s.dir / "x.tif", 0.5); },
     "{predict} {d}/x.tif", "{d}/x.tif", nullptr},
    {"ImageIsDirectory", [](const Scene& s) { checkpoint_make(s / "w.pt", "tiny_grey.yaml"); fs::create_directory(s.dir / "x.png"); },
     "{predict} {d}/x.png", "{d}/x.png", nullptr},
    {"ImageUnreadable", [](const Scene& s) { image_with_weights(s, "png"); unreadable(s.dir / "x.png"); },
     "{predict} {d}/x.png", "{d}/x.png", nullptr},
    {"ImageNotUtf8Name", [](const Scene& s) { image_with_weights(s, "png"); fs::rename(s.dir / "x.png", s.dir / "x\xff.png"); truncate_to(s.dir / "x\xff.png", 0.5); },
     "{predict} '{d}/x\xff.png'", "{d}/x\xff.png", nullptr},
    // Read tile by tile (no img_size to resize it to, as training would): no tile fits.
    {"ImageSmallerThanPatch", [](const Scene& s) {
         checkpoint_make(s / "w.pt", "slide_tiny.yaml");
         ips::png_write(s / "x.png", torch::full({1, 8, 8}, 128, torch::kUInt8));
     },
     "predict {slide} --weights {d}/w.pt {cpu} --out {d}/out {d}/x.png", "{d}/x.png", "larger than the image"},

    // ---- slides (a copy of the real one, damaged) ----
    {"SvsTruncated", [](const Scene& s) { svs_copy(s.dir / "s.svs"); fs::resize_file(s.dir / "s.svs", kSvsLevel0Directory / 2); },
     "tiles {d}/s.svs --threads 1 --out {d}/tiles", "{d}/s.svs", nullptr},
    {"SvsTruncatedAfterLevel", [](const Scene& s) { svs_copy(s.dir / "s.svs"); fs::resize_file(s.dir / "s.svs", kSvsLevel0Directory + 600); },
     "tiles {d}/s.svs --threads 1 --out {d}/tiles", "{d}/s.svs", nullptr},
    {"SvsCorruptTiles", [](const Scene& s) { svs_copy(s.dir / "s.svs"); overwrite(s.dir / "s.svs", 400000, 300000, '\0'); },
     "tiles {d}/s.svs --threads 1 --out {d}/tiles", "{d}/s.svs", nullptr},
    {"SvsCorruptHeader", [](const Scene& s) { svs_copy(s.dir / "s.svs"); overwrite(s.dir / "s.svs", 0, 8, 'X'); },
     "tiles {d}/s.svs --threads 1 --out {d}/tiles", "{d}/s.svs", nullptr},
    {"SvsCorruptTilesFeatures", [](const Scene& s) { svs_copy(s.dir / "s.svs"); overwrite(s.dir / "s.svs", 400000, 300000, '\0'); },
     "features {feat} {d}/s.svs {cpu} --out {d}/bags", "{d}/s.svs", nullptr},
    {"PyramidTiffTruncated", [](const Scene& s) { ips::pyramid_tiff_write(s / "p.tif", 1024, 768, 1); truncate_to(s.dir / "p.tif", 0.5); },
     "tiles {d}/p.tif --threads 1 --out {d}/tiles", "{d}/p.tif", nullptr},
    {"TilesPatchLargerThanImage", [](const Scene& s) { png_make(s.dir / "x.png"); },
     "tiles {d}/x.png --patch 512 --threads 1 --out {d}/tiles", "{d}/x.png", "larger than the image"},

    // ---- MNIST digits for `ips data megapixel-mnist` ----
    {"IdxWrongMagic", [](const Scene& s) { digits_make(s); overwrite(s.dir / "digits/train-images-idx3-ubyte", 0, 2, '\x12'); },
     kMegapixel, "{d}/digits/train-images-idx3-ubyte", "magic"},
    {"IdxLabelOutOfRange", [](const Scene& s) { digits_make(s); overwrite(s.dir / "digits/train-labels-idx1-ubyte", -1, 1, '\x0c'); },
     kMegapixel, "{d}/digits/train-labels-idx1-ubyte", "label 12"},
    {"IdxGzipTruncated", [](const Scene& s) {
         digits_make(s);
         const fs::path plain = s.dir / "digits/train-images-idx3-ubyte";
         gzip_write(plain.string() + ".gz", bytes_of(plain));
         fs::remove(plain);
         truncate_to(plain.string() + ".gz", 0.5);
     },
     kMegapixel, "{d}/digits/train-images-idx3-ubyte.gz", nullptr},
    {"NpmDigitsNotJson", [](const Scene& s) {
         for (int c = 0; c < 10; ++c) bytes_write(s.dir / "digits" / (std::to_string(c) + ".json"), "{\"data\": [0, 0, 0,");
     },
     kMegapixel, "{d}/digits/0.json", "JSON"},

    // ---- learning curves ----
    {"PlotMetricsLineNotAnObject", [](const Scene& s) { bytes_write(s / "metrics.jsonl", "[1, 2]\n"); },
     "plot {d}/metrics.jsonl --out {d}/curve.png", "{d}/metrics.jsonl:1", nullptr},
    {"PlotMetricsEmpty", [](const Scene& s) { bytes_write(s / "metrics.jsonl", ""); },
     "plot {d}/metrics.jsonl --out {d}/curve.png", "{d}/metrics.jsonl", "no epochs"},
    {"PlotMetricsIsDirectory", [](const Scene& s) { fs::create_directory(s.dir / "metrics.jsonl"); },
     "plot {d}/metrics.jsonl --out {d}/curve.png", "{d}/metrics.jsonl", "is a directory"},
};

// ---- running a case -----------------------------------------------------------------------------

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
}

std::string expand(const std::string& text, const fs::path& dir) {
    const std::string fixtures = kDir + "/tests/fixtures/";
    std::string s = replace_all(text, "{eval-bags}", "eval {bags} --set data_dir={d} --checkpoint {d}/w.pt {cpu}");
    s = replace_all(s, "{eval-syn}", "eval {syn} --checkpoint {d}/w.pt {cpu}");
    s = replace_all(s, "{predict}", "predict {grey} --weights {d}/w.pt {cpu} --out {d}/out");
    s = replace_all(s, "{cpu}", "--device cpu --threads 1");
    s = replace_all(s, "{grey}", fixtures + "tiny_grey.yaml");
    s = replace_all(s, "{slide}", fixtures + "slide_tiny.yaml");
    s = replace_all(s, "{syn}", fixtures + "tiny_synthetic.yaml");
    s = replace_all(s, "{bags}", fixtures + "bags_tiny.yaml");
    s = replace_all(s, "{feat}", fixtures + "features_tiny.yaml");
    s = replace_all(s, "{vit}", fixtures + "features_vit.yaml --encoder kaiko-vits16 --set vit_depth=1");
    s = replace_all(s, "{svs}", ips::test::test_slide_path());
    return replace_all(s, "{d}", dir.string());
}

// Every entry under `root` (folders too): its kind and, for files, size and bytes. An unreadable
// entry is recorded by its kind and size alone.
std::map<std::string, std::string> snapshot(const fs::path& root) {
    std::map<std::string, std::string> entries;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
        const auto st = it->symlink_status();
        const std::string rel = fs::relative(it->path(), root).string();
        if (fs::is_directory(st)) entries[rel] = "folder";
        else if (fs::is_regular_file(st))
            entries[rel] = std::to_string(fs::file_size(it->path())) + " bytes: " +
                           std::to_string(std::hash<std::string>{}(bytes_of(it->path())));
        else entries[rel] = "special file";
    }
    return entries;
}

std::string snapshot_diff(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
    std::string diff;
    for (const auto& [k, v] : after) {
        auto it = before.find(k);
        if (it == before.end()) diff += "  new: " + k + " (" + v + ")\n";
        else if (it->second != v) diff += "  changed: " + k + " (" + it->second + " -> " + v + ")\n";
    }
    for (const auto& [k, v] : before)
        if (!after.count(k)) diff += "  removed: " + k + "\n";
    return diff;
}

struct Outcome {
    int code;
    std::string out, err;
};

// The binary under a hard time limit (SIGKILL, so a hang shows as a code >= 128), with stdout and
// stderr kept apart: the message must be on stderr.
Outcome ips_run_split(const std::string& args, const fs::path& logs) {
    const fs::path out = logs / "stdout", err = logs / "stderr";
    const std::string cmd = "timeout -s KILL 120 " + std::string(IPS_BINARY) + " " + args + " >'" + out.string() + "' 2>'" +
                            err.string() + "'";
    const int status = std::system(cmd.c_str());
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return {code, bytes_of(out), bytes_of(err)};
}

// gtest prints a case's parameter (also in the test list ctest reads): its command rather than its
// bytes, with a non-UTF-8 file name's bytes escaped.
void PrintTo(const BadInputCase& c, std::ostream* os) {
    *os << c.name << ": ips ";
    for (const char* p = c.command; *p; ++p) {
        const auto b = static_cast<unsigned char>(*p);
        if (b < 0x80) *os << *p;
        else *os << "\\x" << "0123456789abcdef"[b >> 4] << "0123456789abcdef"[b & 15];
    }
}

class BadInput : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(BadInput, FailsCleanlyNamingTheCulprit) {
    const BadInputCase& c = GetParam();
    ips::test::TempDir dir("ips_bad"), scratch("ips_bad_scratch");
    const Scene scene{dir.path, scratch.path};
    c.make(scene);
    if (HasFatalFailure()) return;
    const auto before = snapshot(dir.path);
    const std::string args = expand(c.command, dir.path);
    const Outcome r = ips_run_split(args, scratch.path);
    const std::string shown = "ips " + args + "\nexit " + std::to_string(r.code) + "\nstderr:\n" + r.err + "stdout:\n" + r.out;

    EXPECT_GT(r.code, 0) << shown;
    EXPECT_LT(r.code, 128) << "a crash or a signal\n" << shown;
    EXPECT_NE(r.err.find(expand(c.names, dir.path)), std::string::npos)
        << "stderr does not name " << expand(c.names, dir.path) << "\n" << shown;
    if (c.also) {
        EXPECT_NE(r.err.find(expand(c.also, dir.path)), std::string::npos)
            << "stderr does not say " << expand(c.also, dir.path) << "\n" << shown;
    }
    const std::string diff = snapshot_diff(before, snapshot(dir.path));
    EXPECT_TRUE(diff.empty()) << "partial output left behind:\n" << diff << shown;
}

INSTANTIATE_TEST_SUITE_P(Table, BadInput, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<BadInputCase>& info) { return std::string(info.param.name); });

// Every case's scene, made where the Python module's run of the same table reads them
// (tests/python/test_bad_input.py sets IPS_BAD_INPUT_SCENES), or in a temporary folder: the inputs
// in DIR/<name>/, and DIR/cases.json listing each case's name, folder, command, and what the error
// must name and say, expanded. Strings are written byte for byte as code points 0-255 (Latin-1), so
// the non-UTF-8 file names arrive as they are.
TEST(BadInputTable, EveryCaseMakesItsScene) {
    const char* env = std::getenv("IPS_BAD_INPUT_SCENES");
    ips::test::TempDir temp("ips_bad_scenes"), scratch("ips_bad_scenes_scratch");
    const fs::path root = env && *env ? fs::path(env) : temp.path;
    const auto bytes = [](const std::string& s) {
        std::string utf8;
        for (unsigned char b : s) {
            if (b < 0x80) utf8 += char(b);
            else utf8 += {char(0xc0 | (b >> 6)), char(0x80 | (b & 0x3f))};
        }
        return utf8;
    };
    nlohmann::json cases = nlohmann::json::array();
    for (const auto& c : kCases) {
        const fs::path dir = root / c.name;
        fs::remove_all(dir);
        fs::create_directories(dir);
        fs::create_directories(scratch.path / c.name);
        c.make(Scene{dir, scratch.path / c.name});
        ASSERT_FALSE(HasFatalFailure()) << c.name;
        cases.push_back({{"name", c.name},
                         {"dir", bytes(dir.string())},
                         {"command", bytes(expand(c.command, dir))},
                         {"names", bytes(expand(c.names, dir))},
                         {"also", c.also ? bytes(expand(c.also, dir)) : ""}});
    }
    std::ofstream(root / "cases.json") << cases.dump(1) << "\n";
    EXPECT_EQ(cases.size(), std::size(kCases));
}

TEST(BadInputTable, CountsAtLeastFortyFiveDistinctCases) {
    std::set<std::string> names;
    for (const auto& c : kCases) EXPECT_TRUE(names.insert(c.name).second) << c.name;
    EXPECT_GE(names.size(), 45u);
}

}  // namespace
