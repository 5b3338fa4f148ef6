#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ips/feature_bag.h"
#include "ips/files.h"
#include "test_support.h"

using namespace ips;
using ips::test::TempDir;

namespace {

FeatureBag random_bag(int64_t n, int64_t f, torch::ScalarType dtype) {
    FeatureBag bag;
    bag.features = torch::randn({n, f}).to(dtype);
    bag.coords = torch::randint(0, 100000, {n, 2}, torch::kLong);
    bag.patch_size = 256;
    bag.patch_level = 1;
    return bag;
}

// Expects `fn` to throw std::runtime_error whose message names the file and contains `what`.
template <class Fn>
void expect_error(Fn fn, const std::string& path, const std::string& what) {
    try {
        fn();
        ADD_FAILURE() << "no exception; expected one mentioning " << what;
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind("feature bag '" + path + "': ", 0), 0u) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
}

// Files written by other tools, built with the HDF5 C API directly: int32 coords, attributes on
// the root (TRIDENT), a float64 `label` (h5py writing a Python float).
void h5_dataset(hid_t loc, const char* name, hid_t type, const std::vector<hsize_t>& dims, const void* data) {
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    EXPECT_GE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(ds);
    H5Sclose(space);
}
void h5_attr(hid_t loc, const char* name, hid_t type, const void* v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Awrite(a, type, v), 0);
    H5Aclose(a);
    H5Sclose(space);
}

}  // namespace

TEST(FeatureBag, PerSlideRoundTripFloat32) {
    TempDir dir;
    const auto path = dir / "slide.h5";
    auto bag = random_bag(37, 5, torch::kFloat32);
    feature_bag_write(path, bag);
    feature_bag_write(path, bag);  // replacing an existing file works too
    auto got = feature_bag_read(path);
    EXPECT_EQ(got.features.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(got.features, bag.features));
    ASSERT_TRUE(got.coords.defined());
    EXPECT_EQ(got.coords.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(got.coords, bag.coords));
    EXPECT_EQ(got.patch_size, 256);
    EXPECT_EQ(got.patch_level, 1);
    // No temporary left behind.
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) files += (void(e), 1);
    EXPECT_EQ(files, 1);
}

TEST(FeatureBag, PerSlideRoundTripFloat16AndNoCoords) {
    TempDir dir;
    const auto path = dir / "slide.h5";
    auto bag = random_bag(1500, 9, torch::kHalf);
    feature_bag_write(path, bag);
    auto got = feature_bag_read(path);
    EXPECT_EQ(got.features.scalar_type(), torch::kHalf);
    EXPECT_TRUE(torch::equal(got.features, bag.features));
    EXPECT_TRUE(torch::equal(got.coords, bag.coords));

    bag.coords = torch::Tensor();
    bag.patch_size = 512;
    feature_bag_write(path, bag);
    got = feature_bag_read(path);
    EXPECT_FALSE(got.coords.defined());
    EXPECT_EQ(got.patch_size, 512);
    EXPECT_TRUE(torch::equal(got.features, bag.features));
}

// What `ips features` checks before it takes a bag as done, without reading the features; and a
// bag written again later is the same bytes (HDF5 would record the time the datasets were made).
TEST(FeatureBag, InfoWithoutTheFeaturesAndCutFilesAreRefused) {
    TempDir dir;
    const auto path = dir / "slide.h5";
    const auto bag = random_bag(40, 6, torch::kHalf);
    feature_bag_write(path, bag);
    const FeatureBagInfo info = feature_bag_info(path);
    EXPECT_EQ(info.rows, 40);
    EXPECT_EQ(info.dim, 6);
    EXPECT_EQ(info.dtype, torch::kHalf);
    EXPECT_TRUE(torch::equal(info.coords, bag.coords));
    EXPECT_EQ(info.patch_size, 256);
    EXPECT_EQ(info.patch_level, 1);
    const std::string bytes = file_read(path);
    // Cut short (a copy that stopped half way): it does not open, and says so naming the file.
    std::filesystem::resize_file(path, bytes.size() / 2);
    expect_error([&] { feature_bag_info(path); }, path, "cannot open");
    EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

TEST(FeatureBag, LazySourceReadsRequestedRows) {
    TempDir dir;
    for (auto dtype : {torch::kFloat32, torch::kHalf}) {
        const auto path = dir / (dtype == torch::kHalf ? "half.h5" : "float.h5");
        auto bag = random_bag(3000, 7, dtype);  // more rows than one chunk
        feature_bag_write(path, bag);
        auto src = feature_bag_source_open(path);
        ASSERT_EQ(src->size(), 3000);
        EXPECT_EQ(src->patch_shape(), (std::vector<int64_t>{7}));
        EXPECT_EQ(src->device(), torch::Device(torch::kCPU));
        auto all = bag.features.to(torch::kFloat32);
        auto idx = torch::tensor({2999, 5, 6, 7, 5, 0, 1500, 8, 2999, 1023, 1024, 1022}, torch::kLong);
        auto got = src->read(idx);
        EXPECT_EQ(got.scalar_type(), torch::kFloat32);
        EXPECT_TRUE(torch::equal(got, all.index_select(0, idx)));
        EXPECT_EQ(src->read(torch::empty({0}, torch::kLong)).sizes(), (std::vector<int64_t>{0, 7}));
        auto perm = torch::randperm(3000);
        EXPECT_TRUE(torch::equal(src->read(perm), all.index_select(0, perm)));

        EXPECT_TRUE(torch::equal(src->read_range(1000, 100), all.narrow(0, 1000, 100)));
        EXPECT_EQ(src->read_range(3000, 0).size(0), 0);
        EXPECT_THROW(src->read_range(2950, 51), std::out_of_range);

        for (int64_t n : {0, 1234, 2999}) {
            auto o = src->patch_origin(n);
            EXPECT_EQ(o[0], bag.coords[n][0].item<int64_t>());
            EXPECT_EQ(o[1], bag.coords[n][1].item<int64_t>());
        }

        // Chunks travel as stored: float16 stays float16 until stored_to_float on the compute device.
        auto stored = src->read_stored(idx);
        EXPECT_EQ(stored.scalar_type(), dtype);
        EXPECT_TRUE(torch::equal(src->stored_to_float(stored), got));
        EXPECT_TRUE(torch::equal(src->stored_to_float(src->read_range_stored(1000, 100)), all.narrow(0, 1000, 100)));

        auto eager = src->to(torch::kCPU);
        EXPECT_EQ(eager->size(), 3000);
        EXPECT_TRUE(torch::equal(eager->read(idx), got));
        EXPECT_EQ(eager->read_stored(idx).scalar_type(), dtype);  // an eager bag keeps its 16 bits
    }
}

TEST(FeatureBag, OutOfRangeIndexThrowsNamingIt) {
    TempDir dir;
    const auto path = dir / "slide.h5";
    feature_bag_write(path, random_bag(10, 3, torch::kFloat32));
    auto src = feature_bag_source_open(path);
    for (int64_t bad : {10, -1}) {
        try {
            src->read(torch::tensor({int64_t{2}, bad}, torch::kLong));
            ADD_FAILURE() << "index " << bad << " accepted";
        } catch (const std::out_of_range& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
            EXPECT_NE(msg.find("[0, 10)"), std::string::npos) << msg;
        }
    }
}

TEST(FeatureBag, ReferenceLayoutGroups) {
    TempDir dir;
    const auto path = dir / "bags.h5";
    std::vector<torch::Tensor> imgs = {torch::randn({12, 4}), torch::randn({1, 4}).to(torch::kHalf),
                                       torch::randn({2100, 4})};
    const std::vector<std::string> names = {"slide_a", "slide_b", "slide_c"};
    for (size_t i = 0; i < 3; ++i) feature_bag_group_write(path, names[i], imgs[i], static_cast<int64_t>(i) % 2);
    auto groups = feature_bag_groups(path);
    ASSERT_EQ(groups.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(groups[i].name, names[i]);
        EXPECT_EQ(groups[i].label, static_cast<int64_t>(i) % 2);
        EXPECT_EQ(groups[i].n_rows, imgs[i].size(0));
        auto src = feature_bag_source_open(path, names[i]);
        EXPECT_EQ(src->size(), imgs[i].size(0));
        auto idx = torch::tensor({imgs[i].size(0) - 1, int64_t{0}, imgs[i].size(0) - 1}, torch::kLong);
        EXPECT_TRUE(torch::equal(src->read(idx), imgs[i].to(torch::kFloat32).index_select(0, idx)));
        EXPECT_EQ(src->patch_origin(0), (std::array<int64_t, 2>{0, 0}));
    }
    expect_error([&] { feature_bag_group_write(path, "slide_b", imgs[0], 0); }, path, "already exists");
}

TEST(FeatureBag, ReadsFilesOfOtherWriters) {
    TempDir dir;
    const auto path = dir / "trident.h5";
    std::vector<float> feats = {1, 2, 3, 4, 5, 6};
    std::vector<int32_t> coords = {10, 20, 30, 40, 50, 60};
    const int64_t size = 224, level = 0;
    const double label = 1.0;
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    h5_dataset(f, "features", H5T_NATIVE_FLOAT, {3, 2}, feats.data());
    h5_dataset(f, "coords", H5T_NATIVE_INT32, {3, 2}, coords.data());
    h5_attr(f, "patch_size", H5T_NATIVE_INT64, &size);
    h5_attr(f, "patch_level", H5T_NATIVE_INT64, &level);
    hid_t g = H5Gcreate2(f, "slide", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_dataset(g, "img", H5T_NATIVE_FLOAT, {3, 2}, feats.data());
    h5_attr(g, "label", H5T_NATIVE_DOUBLE, &label);
    H5Gclose(g);
    H5Fclose(f);

    auto bag = feature_bag_read(path);
    EXPECT_TRUE(torch::equal(bag.features, torch::tensor(feats).view({3, 2})));
    EXPECT_TRUE(torch::equal(bag.coords, torch::tensor(coords).view({3, 2}).to(torch::kLong)));
    EXPECT_EQ(bag.patch_size, 224);
    EXPECT_EQ(bag.patch_level, 0);
    EXPECT_EQ(feature_bag_source_open(path)->patch_origin(2), (std::array<int64_t, 2>{50, 60}));
    auto groups = feature_bag_groups(path);  // datasets at the root are not groups
    ASSERT_EQ(groups.size(), 1u);
    EXPECT_EQ(groups[0].label, 1);
    EXPECT_EQ(groups[0].n_rows, 3);
}

TEST(FeatureBag, ErrorsNameTheFile) {
    TempDir dir;
    const auto missing = dir / "missing.h5";
    expect_error([&] { feature_bag_read(missing); }, missing, "not found");
    expect_error([&] { feature_bag_source_open(missing); }, missing, "not found");
    expect_error([&] { feature_bag_groups(missing); }, missing, "not found");

    const auto text = dir / "text.h5";
    std::ofstream(text) << "not hdf5\n";
    expect_error([&] { feature_bag_read(text); }, text, "not an HDF5 file");
    expect_error([&] { feature_bag_source_open(text); }, text, "not an HDF5 file");
    expect_error([&] { feature_bag_group_write(text, "g", torch::ones({2, 2}), 0); }, text, "not an HDF5 file");

    const auto ref = dir / "ref.h5";  // reference layout: no `features`
    feature_bag_group_write(ref, "slide_1", torch::ones({4, 3}), 1);
    expect_error([&] { feature_bag_read(ref); }, ref, "'features'");
    expect_error([&] { feature_bag_source_open(ref); }, ref, "'features'");
    expect_error([&] { feature_bag_source_open(ref, "slide_9"); }, ref, "'slide_9'");

    const auto no_dir = dir / "nowhere/slide.h5";
    expect_error([&] { feature_bag_write(no_dir, random_bag(3, 2, torch::kFloat32)); }, no_dir, "cannot create");
    EXPECT_FALSE(std::filesystem::exists(dir.path / "nowhere"));
    const auto flat = dir / "flat.h5";
    FeatureBag bad;
    bad.features = torch::ones({5});
    expect_error([&] { feature_bag_write(flat, bad); }, flat, "[N, F]");
    EXPECT_FALSE(std::filesystem::exists(flat));

    // A group missing its label or with a 3-D img.
    const auto broken = dir / "broken.h5";
    hid_t f = H5Fcreate(broken.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<float> x(8, 1.0f);
    hid_t g = H5Gcreate2(f, "nolabel", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_dataset(g, "img", H5T_NATIVE_FLOAT, {4, 2}, x.data());
    H5Gclose(g);
    h5_dataset(f, "features", H5T_NATIVE_FLOAT, {2, 2, 2}, x.data());
    H5Fclose(f);
    expect_error([&] { feature_bag_groups(broken); }, broken, "group 'nolabel' has no attribute 'label'");
    expect_error([&] { feature_bag_read(broken); }, broken, "rank 3");
    // Every failure above closed what it had opened.
    EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

// h5py (what CLAM / TRIDENT read with) sees our float16 as numpy float16 and finds the attributes
// on `coords`. scripts/setup.sh installs Debian's python3-h5py for this peer.
TEST(FeatureBag, PeerH5pyReadsOurFile) {
    const auto py = ips::test::torch_python();
    ASSERT_EQ(ips::test::command_run(py + " -c 'import h5py'").code, 0)
        << "h5py is missing for " << py << ": install python3-h5py (scripts/setup.sh does)";
    TempDir dir;
    const auto path = dir / "slide.h5";
    auto bag = random_bag(20, 6, torch::kHalf);
    feature_bag_write(path, bag);
    const std::string script =
        "import h5py, sys\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "x, c = f['features'], f['coords']\n"
        "print(x.dtype, c.dtype, int(c.attrs['patch_size']), int(c.attrs['patch_level']),"
        " repr(float(x[()].astype('float64').sum())), int(c[()].sum()))\n";
    const auto script_path = dir / "peer.py";
    std::ofstream(script_path) << script;
    auto r = ips::test::command_run(py + " " + script_path + " " + path);
    ASSERT_EQ(r.code, 0) << r.output;
    std::istringstream out(r.output);
    std::string dtype, coords_dtype;
    int64_t size = 0, level = -1, coords_sum = 0;
    double sum = 0;
    out >> dtype >> coords_dtype >> size >> level >> sum >> coords_sum;
    EXPECT_EQ(dtype, "float16") << r.output;
    EXPECT_EQ(coords_dtype, "int64") << r.output;
    EXPECT_EQ(size, 256);
    EXPECT_EQ(level, 1);
    EXPECT_NEAR(sum, bag.features.to(torch::kDouble).sum().item<double>(), 1e-6) << r.output;
    EXPECT_EQ(coords_sum, bag.coords.sum().item<int64_t>());
}

// HDF5 lets a chunked dataset declare up to 2^64 rows with nothing written (found by
// fuzz/feature_bag.cpp, F8): such a shape is refused by name before any size is computed from it.
TEST(FeatureBag, ImplausibleShapesAreRefusedNamingTheFile) {
    const auto py = ips::test::torch_python();
    ASSERT_EQ(ips::test::command_run(py + " -c 'import h5py'").code, 0) << "install python3-h5py (scripts/setup.sh does)";
    TempDir dir;
    const auto path = dir / "huge.h5";
    const std::string script =
        "import h5py, sys\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    f.create_dataset('features', shape=(2**40, 1024), chunks=(1, 1024), dtype='f4')\n";
    std::ofstream(dir / "make.py") << script;
    const auto made = ips::test::command_run(py + " " + dir / "make.py" + " " + path);
    ASSERT_EQ(made.code, 0) << made.output;
    using ips::test::error_of;
    for (const std::string& what : {error_of([&] { feature_bag_info(path); }), error_of([&] { feature_bag_read(path); }),
                                    error_of([&] { feature_bag_source_open(path); })}) {
        EXPECT_NE(what.find(path), std::string::npos) << what;
        EXPECT_NE(what.find("implausible shape [1099511627776, 1024]"), std::string::npos) << what;
    }
}

// Bags as CLAM and TRIDENT write them (tests/peer/make_peer_bags.py, with h5py and torch as their
// code does): every file gives the same features, and each its tile side as the writer records it.
TEST(FeatureBag, ReadsClamAndTridentBagsAsTheyWriteThem) {
    TempDir dir;
    const auto r = test::command_run("'" + test::torch_python() + "' '" + std::string(IPS_SOURCE_DIR) +
                                     "/tests/peer/make_peer_bags.py' '" + dir.path.string() + "' 2>&1");
    ASSERT_EQ(r.code, 0) << r.output;
    const FeatureBag clam = feature_bag_read(dir / "clam.h5");
    EXPECT_EQ(clam.features.sizes(), (std::vector<int64_t>{40, 32}));
    EXPECT_EQ(clam.coords.scalar_type(), torch::kLong);  // stored as int32
    EXPECT_EQ(clam.patch_size, 0);                        // CLAM's features files record no side
    EXPECT_TRUE(clam.encoder.empty());
    const FeatureBag trident = feature_bag_read(dir / "trident.h5");
    EXPECT_TRUE(torch::equal(trident.features, clam.features));
    EXPECT_EQ(trident.patch_size, 512);  // patch_size_level0, not the 20x patch_size of 256
    EXPECT_EQ(trident.patch_level, 0);
    EXPECT_EQ(trident.encoder, "uni_v1");
    const FeatureBagInfo info = feature_bag_info(dir / "trident.h5");
    EXPECT_EQ(info.encoder, "uni_v1");
    EXPECT_EQ(info.rows, 40);
}

// ips names the encoder beside the features as TRIDENT does, with its width, and reads it back.
TEST(FeatureBag, TheEncoderIsRecordedBesideTheFeatures) {
    TempDir dir;
    FeatureBag bag = random_bag(5, 3, torch::kFloat32);
    bag.encoder = "kaiko-vitb16";
    feature_bag_write(dir / "b.h5", bag);
    EXPECT_EQ(feature_bag_read(dir / "b.h5").encoder, "kaiko-vitb16");
    const auto r = test::command_run("'" + test::torch_python() + "' -c \"import h5py; f = h5py.File('" + (dir / "b.h5") +
                                     "'); print(f['features'].attrs['encoder'], int(f['features'].attrs['dim']))\" 2>&1");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("kaiko-vitb16 3"), std::string::npos) << r.output;
}
