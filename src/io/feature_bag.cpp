#include "ips/feature_bag.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "ips/config.h"
#include "ips/files.h"

namespace ips {
namespace {

// Debian's libhdf5 may be built without thread safety, and even the thread-safe build serialises
// internally; one process-wide lock around every call keeps data loader threads from corrupting it.
std::unique_lock<std::mutex> h5_lock() {
    static std::mutex mutex;
    std::unique_lock<std::mutex> lock(mutex);
    // The error stack (and its auto-print setting) is per thread in thread-safe builds, so silence
    // it once per thread rather than once per process: failures become exceptions, not stderr noise.
    static thread_local bool quiet = false;
    if (!quiet) {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        quiet = true;
    }
    return lock;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error("feature bag '" + path + "': " + what);
}

herr_t innermost_error(unsigned n, const H5E_error2_t* e, void* out) {
    if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
    return 0;
}

// The most specific message on HDF5's error stack (e.g. errno text for a full disk), if any.
std::string h5_detail() {
    std::string d;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &d);
    return d.empty() ? "" : " (" + d + ")";
}

// HDF5 reports failure as a negative id / status; both are checked through here.
template <class T>
T check(T r, const std::string& path, const std::string& what) {
    if (r < 0) fail(path, what + h5_detail());
    return r;
}

// Owns one hid_t; closed on scope exit so an exception never leaks a file or dataset handle.
// Must only be destroyed while h5_lock() is held.
struct H5Handle {
    hid_t id = H5I_INVALID_HID;
    herr_t (*closer)(hid_t) = nullptr;
    H5Handle() = default;
    H5Handle(hid_t i, herr_t (*c)(hid_t)) : id(i), closer(c) {}
    H5Handle(H5Handle&& o) noexcept : id(std::exchange(o.id, H5I_INVALID_HID)), closer(o.closer) {}
    H5Handle& operator=(H5Handle&& o) noexcept {
        std::swap(id, o.id);
        std::swap(closer, o.closer);
        return *this;
    }
    ~H5Handle() { reset(); }
    void reset() {
        if (id >= 0 && closer) closer(std::exchange(id, H5I_INVALID_HID));
    }
    // Closing a written file flushes it; that can fail (disk full) and must not pass silently.
    void close(const std::string& path, const std::string& what) {
        check(closer(std::exchange(id, H5I_INVALID_HID)), path, what);
    }
    operator hid_t() const { return id; }
};

// HDF5 1.10 has no predefined half type; this is exactly how h5py builds it, so h5py / CLAM read
// our float16 datasets as numpy float16.
H5Handle half_type(const std::string& path) {
    H5Handle t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
    if (t < 0 || H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0)
        fail(path, "cannot build the HDF5 float16 type" + h5_detail());
    return t;
}

bool link_exists(hid_t loc, const std::string& name) { return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0; }

H5Handle file_open(const std::string& path, unsigned flags) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw FileNotFound("feature bag '" + path + "': file not found");
    if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, "not an HDF5 file");
    return {check(H5Fopen(path.c_str(), flags, H5P_DEFAULT), path, "cannot open"), H5Fclose};
}

// `features` for group "", else `<group>/img`; the message says which part is missing.
H5Handle features_open(hid_t file, const std::string& path, const std::string& group, std::string& name) {
    if (group.empty()) {
        name = "features";
        if (!link_exists(file, name)) fail(path, "no dataset 'features' (not a per-slide feature bag)");
    } else {
        name = group + "/img";
        if (!link_exists(file, group)) fail(path, "no group '" + group + "'");
        if (!link_exists(file, name)) fail(path, "group '" + group + "' has no dataset 'img'");
    }
    return {check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), path, "cannot open dataset '" + name + "'"),
            H5Dclose};
}

std::vector<hsize_t> dims_of(hid_t ds, const std::string& path, const std::string& name, int rank) {
    H5Handle space(check(H5Dget_space(ds), path, "cannot read the shape of '" + name + "'"), H5Sclose);
    const int r = H5Sget_simple_extent_ndims(space);
    if (r != rank)
        fail(path, "dataset '" + name + "' has rank " + std::to_string(r) + ", expected " + std::to_string(rank));
    std::vector<hsize_t> dims(rank);
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    // HDF5 allows dimensions up to 2^64 (chunked, mostly unwritten): no bag of a slide comes near
    // 2^31 rows or 2^40 values, and sizes beyond them overflow the arithmetic that follows.
    constexpr hsize_t kMostSide = hsize_t(1) << 31, kMostValues = hsize_t(1) << 40;
    hsize_t values = 1;
    std::string shape;
    bool plausible = true;
    for (hsize_t d : dims) {
        shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        plausible = plausible && d <= kMostSide && (d == 0 || values <= kMostValues / d);
        if (plausible) values *= d;
    }
    if (!plausible)
        fail(path, "dataset '" + name + "' has an implausible shape [" + shape + "] (more than 2^31 along a side or 2^40 values)");
    return dims;
}

// Stored class and byte size, for messages and for choosing the in-memory dtype.
std::pair<H5T_class_t, size_t> type_of(hid_t obj, bool is_attr, const std::string& path, const std::string& name) {
    H5Handle t(check(is_attr ? H5Aget_type(obj) : H5Dget_type(obj), path, "cannot read the type of '" + name + "'"),
               H5Tclose);
    return {H5Tget_class(t), H5Tget_size(t)};
}

std::string type_name(std::pair<H5T_class_t, size_t> t) {
    const char* cls = t.first == H5T_INTEGER ? "integer" : t.first == H5T_FLOAT ? "float" : "non-numeric";
    return std::string(cls) + " of " + std::to_string(t.second) + " bytes";
}

// float16 stays half (it is how bags are stored to halve their size); float64 is narrowed to float32.
torch::ScalarType feature_dtype(hid_t ds, const std::string& path, const std::string& name) {
    auto t = type_of(ds, false, path, name);
    if (t.first != H5T_FLOAT || (t.second != 2 && t.second != 4 && t.second != 8))
        fail(path, "dataset '" + name + "' has unsupported dtype " + type_name(t) + " (float16/32/64 expected)");
    return t.second == 2 ? torch::kHalf : torch::kFloat32;
}

// An integer attribute; h5py writers store labels and sizes as any int or float type, scalar or [1].
bool attr_read(hid_t obj, const std::string& attr, int64_t& out, const std::string& path, const std::string& where) {
    if (H5Aexists(obj, attr.c_str()) <= 0) return false;
    const std::string name = "attribute '" + attr + "' of " + where;
    H5Handle a(check(H5Aopen(obj, attr.c_str(), H5P_DEFAULT), path, "cannot open " + name), H5Aclose);
    auto t = type_of(a, true, path, name);
    if (t.first != H5T_INTEGER && t.first != H5T_FLOAT) fail(path, name + " has unsupported dtype " + type_name(t));
    H5Handle space(check(H5Aget_space(a), path, "cannot read the shape of " + name), H5Sclose);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n != 1) fail(path, name + " has " + std::to_string(n) + " values, expected one");
    check(H5Aread(a, H5T_NATIVE_INT64, &out), path, "cannot read " + name);
    return true;
}

void attr_write(hid_t obj, const char* attr, int64_t v, const std::string& path) {
    H5Handle space(check(H5Screate(H5S_SCALAR), path, "cannot create a dataspace"), H5Sclose);
    H5Handle a(check(H5Acreate2(obj, attr, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), path,
                     std::string("cannot create attribute '") + attr + "'"),
               H5Aclose);
    check(H5Awrite(a, H5T_NATIVE_INT64, &v), path, std::string("cannot write attribute '") + attr + "'");
}

// A string attribute as h5py writes a str (variable-length UTF-8), or a fixed-length one; false
// when absent. Numbers and other types are refused, naming the attribute.
bool attr_read(hid_t obj, const std::string& attr, std::string& out, const std::string& path, const std::string& where) {
    if (H5Aexists(obj, attr.c_str()) <= 0) return false;
    const std::string name = "attribute '" + attr + "' of " + where;
    H5Handle a(check(H5Aopen(obj, attr.c_str(), H5P_DEFAULT), path, "cannot open " + name), H5Aclose);
    H5Handle type(check(H5Aget_type(a), path, "cannot read the type of " + name), H5Tclose);
    if (H5Tget_class(type) != H5T_STRING) fail(path, name + " is not a string");
    H5Handle space(check(H5Aget_space(a), path, "cannot read the shape of " + name), H5Sclose);
    if (H5Sget_simple_extent_npoints(space) != 1) fail(path, name + " holds more than one string");
    if (H5Tis_variable_str(type) > 0) {
        H5Handle mem(check(H5Tcopy(H5T_C_S1), path, "cannot make a string type"), H5Tclose);
        check(H5Tset_size(mem, H5T_VARIABLE), path, "cannot make a string type");
        check(H5Tset_cset(mem, H5Tget_cset(type)), path, "cannot make a string type");  // h5py: UTF-8
        char* text = nullptr;
        check(H5Aread(a, mem, &text), path, "cannot read " + name);
        out = text ? text : "";
        H5free_memory(text);
    } else {
        const size_t n = H5Tget_size(type);
        if (n > (size_t(1) << 20)) fail(path, name + " is longer than 1 MiB");
        std::string text(n, '\0');
        check(H5Aread(a, type, text.data()), path, "cannot read " + name);
        out = text.substr(0, text.find('\0'));
    }
    return true;
}

void attr_write(hid_t obj, const char* attr, const std::string& v, const std::string& path) {
    H5Handle space(check(H5Screate(H5S_SCALAR), path, "cannot create a dataspace"), H5Sclose);
    H5Handle type(check(H5Tcopy(H5T_C_S1), path, "cannot make a string type"), H5Tclose);
    check(H5Tset_size(type, H5T_VARIABLE), path, "cannot make a string type");
    check(H5Tset_cset(type, H5T_CSET_UTF8), path, "cannot make a string type");
    H5Handle a(check(H5Acreate2(obj, attr, type, space, H5P_DEFAULT, H5P_DEFAULT), path,
                     std::string("cannot create attribute '") + attr + "'"),
               H5Aclose);
    const char* text = v.c_str();
    check(H5Awrite(a, type, &text), path, std::string("cannot write attribute '") + attr + "'");
}

// A 2-D tensor as its own dataset. Feature matrices are chunked by rows so a lazy source reading a
// few rows touches a few chunks; chunks stay near 1 MiB to fit HDF5's default chunk cache.
H5Handle dataset_write(hid_t loc, const std::string& name, const torch::Tensor& t, hid_t file_type, hid_t mem_type,
                       bool chunk_rows, const std::string& path) {
    const hsize_t dims[2] = {static_cast<hsize_t>(t.size(0)), static_cast<hsize_t>(t.size(1))};
    H5Handle space(check(H5Screate_simple(2, dims, nullptr), path, "cannot create a dataspace"), H5Sclose);
    H5Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), path, "cannot create a property list"), H5Pclose);
    if (chunk_rows && dims[0] > 0 && dims[1] > 0) {
        const hsize_t row_bytes = dims[1] * t.element_size();
        const hsize_t rows = std::clamp<hsize_t>((hsize_t{1} << 20) / row_bytes, 1, std::min<hsize_t>(dims[0], 1024));
        const hsize_t chunk[2] = {rows, dims[1]};
        check(H5Pset_chunk(dcpl, 2, chunk), path, "cannot chunk dataset '" + name + "'");
    }
    H5Handle ds(check(H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path,
                      "cannot create dataset '" + name + "'"),
                H5Dclose);
    if (t.numel() > 0)
        check(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), path,
              "cannot write dataset '" + name + "'");
    return ds;
}

// Features as stored on disk: CPU, contiguous, float16 kept, anything else float32.
torch::Tensor features_for_disk(const torch::Tensor& f, const std::string& path, const std::string& name) {
    if (!f.defined() || f.dim() != 2) fail(path, "'" + name + "' must be a [N, F] tensor");
    auto t = f.to(torch::kCPU);
    return (t.scalar_type() == torch::kHalf ? t : t.to(torch::kFloat32)).contiguous();
}

void features_write(hid_t loc, const std::string& name, const torch::Tensor& t, const std::string& path) {
    if (t.scalar_type() == torch::kHalf) {
        H5Handle half = half_type(path);
        dataset_write(loc, name, t, half, half, true, path);
    } else {
        dataset_write(loc, name, t, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, true, path);
    }
}

// Coords [N, 2] as int64 whatever integer or float type they were stored as; undefined if absent.
torch::Tensor coords_read(hid_t file, int64_t n, const std::string& path) {
    if (!link_exists(file, "coords")) return {};
    H5Handle ds(check(H5Dopen2(file, "coords", H5P_DEFAULT), path, "cannot open dataset 'coords'"), H5Dclose);
    auto dims = dims_of(ds, path, "coords", 2);
    if (dims[1] != 2) fail(path, "dataset 'coords' has " + std::to_string(dims[1]) + " columns, expected 2 (x, y)");
    if (static_cast<int64_t>(dims[0]) != n)
        fail(path, "dataset 'coords' has " + std::to_string(dims[0]) + " rows, the features " + std::to_string(n));
    auto t = type_of(ds, false, path, "coords");
    if (t.first != H5T_INTEGER && t.first != H5T_FLOAT)
        fail(path, "dataset 'coords' has unsupported dtype " + type_name(t));
    auto coords = torch::empty({n, 2}, torch::kLong);
    if (n > 0)
        check(H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, coords.data_ptr()), path,
              "cannot read dataset 'coords'");
    return coords;
}

// The tile side as each writer records it, on `coords` (CLAM's patch files, TRIDENT, ips) or else
// on the file root (some TRIDENT versions). ips and CLAM's patch files: patch_size at
// patch_level. TRIDENT: patch_size at its target magnification and patch_size_level0 (no level):
// the level-0 side. CLAM's features files (attr_dict=None): nothing; patch_size stays 0, and
// readers take the side from the coordinates' step (input_open).
void patch_geometry_read(hid_t file, FeatureBagInfo& info, const std::string& path) {
    H5Handle coords(check(H5Dopen2(file, "coords", H5P_DEFAULT), path, "cannot open dataset 'coords'"), H5Dclose);
    const auto attr = [&](const char* name, int64_t& v) {
        return attr_read(coords, name, v, path, "'coords'") || attr_read(file, name, v, path, "the file root");
    };
    int64_t level0 = 0;
    const bool has_level = attr("patch_level", info.patch_level);
    const bool has_size = attr("patch_size", info.patch_size);
    if (!has_level && attr("patch_size_level0", level0)) {
        info.patch_size = level0;
        info.patch_level = 0;
    } else if (has_size && !has_level) {
        info.patch_level = 0;
    } else if (has_level && !has_size) {
        fail(path, "attribute 'patch_level' without 'patch_size' on 'coords' or the file root");
    }
    if (info.patch_size < 0 || info.patch_level < 0)
        fail(path, "negative patch_size or patch_level (" + std::to_string(info.patch_size) + ", " +
                       std::to_string(info.patch_level) + ")");
}

// Rows of a bag read on demand; the file stays open for the source's lifetime.
struct BagSource : PatchSource {
    BagSource(const std::string& p, const std::string& group) : path(p) {
        // Locals until everything checked out: if this throws, they close while the lock is held
        // (members would only be destroyed after it is released).
        auto lock = h5_lock();
        H5Handle fh = file_open(path, H5F_ACC_RDONLY);
        H5Handle dh = features_open(fh, path, group, name);
        dtype = feature_dtype(dh, path, name);  // rejects non-float data before the first read
        H5Handle hh = dtype == torch::kHalf ? half_type(path) : H5Handle();
        auto dims = dims_of(dh, path, name, 2);
        n = static_cast<int64_t>(dims[0]);
        f = static_cast<int64_t>(dims[1]);
        if (group.empty()) {
            auto c = coords_read(fh, n, path);
            if (c.defined()) coords.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + 2 * n);
        }
        file = std::move(fh);
        ds = std::move(dh);
        half = std::move(hh);
    }
    ~BagSource() override {
        auto lock = h5_lock();
        half.reset();
        ds.reset();
        file.reset();
    }
    int64_t size() const override { return n; }
    std::vector<int64_t> patch_shape() const override { return {f}; }
    torch::Device device() const override { return torch::kCPU; }

    torch::Tensor read(const torch::Tensor& idx) override { return read_stored(idx).to(torch::kFloat32); }
    torch::Tensor read_range(int64_t start, int64_t count) override {
        return read_range_stored(start, count).to(torch::kFloat32);
    }
    torch::Tensor stored_to_float(const torch::Tensor& stored) const override { return stored.to(torch::kFloat32); }

    torch::Tensor read_stored(const torch::Tensor& idx) override {
        auto want = idx.to(torch::kCPU, torch::kLong).contiguous().view(-1);
        const int64_t k = want.numel();
        const int64_t* w = want.data_ptr<int64_t>();
        for (int64_t i = 0; i < k; ++i)
            if (w[i] < 0 || w[i] >= n)
                throw std::out_of_range("feature bag '" + path + "': row index " + std::to_string(w[i]) +
                                        " out of range [0, " + std::to_string(n) + ")");
        // Sorted distinct rows are read in runs of consecutive rows (one hyperslab each), then
        // `slot` maps every request, in its order and with repeats, to its row in that buffer.
        std::vector<int64_t> order(k);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [w](int64_t a, int64_t b) { return w[a] < w[b]; });
        std::vector<int64_t> rows;
        auto slot = torch::empty({k}, torch::kLong);
        int64_t* s = slot.data_ptr<int64_t>();
        for (int64_t i : order) {
            if (rows.empty() || rows.back() != w[i]) rows.push_back(w[i]);
            s[i] = static_cast<int64_t>(rows.size()) - 1;
        }
        auto buf = torch::empty({static_cast<int64_t>(rows.size()), f}, dtype);
        auto* base = static_cast<char*>(buf.data_ptr());
        auto lock = h5_lock();
        for (size_t i = 0; i < rows.size();) {
            size_t j = i + 1;
            while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
            rows_read(rows[i], static_cast<int64_t>(j - i), base + static_cast<int64_t>(i) * f * buf.element_size());
            i = j;
        }
        lock.unlock();
        return buf.index_select(0, slot);
    }

    torch::Tensor read_range_stored(int64_t start, int64_t count) override {
        if (start < 0 || count < 0 || start + count > n)
            throw std::out_of_range("feature bag '" + path + "': rows [" + std::to_string(start) + ", " +
                                    std::to_string(start + count) + ") out of range [0, " + std::to_string(n) + ")");
        auto out = torch::empty({count, f}, dtype);
        auto lock = h5_lock();
        rows_read(start, count, out.data_ptr());
        lock.unlock();
        return out;
    }

    // Eager mode: the whole bag once, as stored (float16 bags stay half the size), wherever it is wanted.
    std::shared_ptr<PatchSource> to(const torch::Device& d) override {
        return tensor_source_make(read_range_stored(0, n).to(d));
    }

    std::array<int64_t, 2> patch_origin(int64_t i) const override {
        if (coords.empty() || i < 0 || i >= n) return {0, 0};
        return {coords[2 * i], coords[2 * i + 1]};
    }

    // Rows [start, start + count) into out, as `dtype`. Caller holds h5_lock(). float16 is read raw
    // and widened by torch afterwards: HDF5's generic float16 -> float conversion costs ~100 ns per
    // value (4.9 s against 1.8 s for a whole 50k x 1024 bag), and it would run under the lock.
    void rows_read(int64_t start, int64_t count, void* out) {
        if (count == 0 || f == 0) return;
        const hsize_t offset[2] = {static_cast<hsize_t>(start), 0};
        const hsize_t shape[2] = {static_cast<hsize_t>(count), static_cast<hsize_t>(f)};
        H5Handle fspace(check(H5Dget_space(ds), path, "cannot read the shape of '" + name + "'"), H5Sclose);
        check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, nullptr, shape, nullptr), path,
              "cannot select rows of '" + name + "'");
        H5Handle mspace(check(H5Screate_simple(2, shape, nullptr), path, "cannot create a dataspace"), H5Sclose);
        check(H5Dread(ds, half >= 0 ? hid_t(half) : H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, out), path,
              "cannot read rows " + std::to_string(start) + ".." + std::to_string(start + count - 1) + " of '" +
                  name + "'");
    }

    std::string path, name;
    H5Handle file, ds, half;       // closed under the lock in the destructor; half: memory type
    torch::ScalarType dtype = torch::kFloat32;  // as read: float16 stays half, float64 -> float32
    int64_t n = 0, f = 0;
    std::vector<int64_t> coords;   // [N * 2] x, y per row; empty when the file has none
};

// The shape, dtype, coords and patch attributes of a per-slide file; caller holds h5_lock().
FeatureBagInfo info_read(hid_t file, hid_t features, const std::string& path) {
    FeatureBagInfo info;
    const auto dims = dims_of(features, path, "features", 2);
    info.rows = static_cast<int64_t>(dims[0]);
    info.dim = static_cast<int64_t>(dims[1]);
    info.dtype = feature_dtype(features, path, "features");
    info.coords = coords_read(file, info.rows, path);
    if (info.coords.defined()) {
        patch_geometry_read(file, info, path);
    } else {
        // A bag without coords has no geometry to interpret; root attributes are taken if present.
        attr_read(file, "patch_size", info.patch_size, path, "the file root");
        attr_read(file, "patch_level", info.patch_level, path, "the file root");
    }
    attr_read(features, "encoder", info.encoder, path, "'features'");  // ips and TRIDENT write it
    return info;
}

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}

}  // namespace

void feature_bag_write(const std::string& path, const FeatureBag& bag) {
    auto features = features_for_disk(bag.features, path, "features");
    torch::Tensor coords;
    if (bag.coords.defined()) {
        if (bag.coords.dim() != 2 || bag.coords.size(1) != 2 || bag.coords.size(0) != features.size(0))
            fail(path, "coords must be [N, 2] with N = " + std::to_string(features.size(0)) + " rows");
        coords = bag.coords.to(torch::kCPU, torch::kLong).contiguous();
    }
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    try {
        auto lock = h5_lock();
        H5Handle file(check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path,
                            "cannot create '" + tmp + "'"),
                      H5Fclose);
        features_write(file, "features", features, path);
        if (!bag.encoder.empty()) {  // beside the features, as TRIDENT puts it
            H5Handle f(check(H5Dopen2(file, "features", H5P_DEFAULT), path, "cannot open dataset 'features'"), H5Dclose);
            attr_write(f, "encoder", bag.encoder, path);
            attr_write(f, "dim", features.size(1), path);
        }
        H5Handle ds;
        if (coords.defined()) ds = dataset_write(file, "coords", coords, H5T_STD_I64LE, H5T_NATIVE_INT64, false, path);
        // On `coords` as CLAM does; without coords on the root, where TRIDENT-style readers also look.
        attr_write(ds >= 0 ? hid_t(ds) : hid_t(file), "patch_size", bag.patch_size, path);
        attr_write(ds >= 0 ? hid_t(ds) : hid_t(file), "patch_level", bag.patch_level, path);
        ds.reset();  // the file only closes (and flushes) once nothing in it is open
        file.close(path, "cannot finish writing '" + tmp + "'");
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    file_commit(tmp, path);
}

FeatureBagInfo feature_bag_info(const std::string& path) {
    auto lock = h5_lock();
    H5Handle file = file_open(path, H5F_ACC_RDONLY);
    std::string name;
    H5Handle ds = features_open(file, path, "", name);
    return info_read(file, ds, path);
}

FeatureBag feature_bag_read(const std::string& path) {
    auto lock = h5_lock();
    H5Handle file = file_open(path, H5F_ACC_RDONLY);
    std::string name;
    H5Handle ds = features_open(file, path, "", name);
    const FeatureBagInfo info = info_read(file, ds, path);
    FeatureBag bag;
    bag.features = torch::empty({info.rows, info.dim}, info.dtype);
    if (bag.features.numel() > 0) {
        H5Handle half = info.dtype == torch::kHalf ? half_type(path) : H5Handle();
        check(H5Dread(ds, info.dtype == torch::kHalf ? hid_t(half) : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                      bag.features.data_ptr()),
              path, "cannot read dataset 'features'");
    }
    bag.coords = info.coords;
    bag.patch_size = info.patch_size;
    bag.patch_level = info.patch_level;
    bag.encoder = info.encoder;
    return bag;
}

PatchSourcePtr feature_bag_source_open(const std::string& path, const std::string& group) {
    return std::make_shared<BagSource>(path, group);
}

std::vector<BagGroup> feature_bag_groups(const std::string& path) {
    auto lock = h5_lock();
    H5Handle file = file_open(path, H5F_ACC_RDONLY);
    // Name order (lexicographic, as h5py lists them): files rarely track creation order.
    std::vector<std::string> names;
    check(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link, &names), path, "cannot list groups");
    std::vector<BagGroup> groups;
    for (const auto& g : names) {
        H5Handle obj(check(H5Oopen(file, g.c_str(), H5P_DEFAULT), path, "cannot open '" + g + "'"), H5Oclose);
        if (H5Iget_type(obj) != H5I_GROUP) continue;  // e.g. a per-slide file's datasets
        BagGroup bg;
        bg.name = g;
        std::string name;
        H5Handle ds = features_open(file, path, g, name);
        bg.n_rows = static_cast<int64_t>(dims_of(ds, path, name, 2)[0]);
        if (!attr_read(obj, "label", bg.label, path, "group '" + g + "'"))
            fail(path, "group '" + g + "' has no attribute 'label'");
        groups.push_back(std::move(bg));
    }
    return groups;
}

// Not atomic, unlike feature_bag_write: it adds a group to a file that may already hold others, so
// writing a temporary copy would mean copying every earlier group on each call.
void feature_bag_group_write(const std::string& path, const std::string& group, const torch::Tensor& img,
                             int64_t label) {
    if (group.empty() || group.find('/') != std::string::npos)
        fail(path, "invalid group name '" + group + "'");
    auto data = features_for_disk(img, path, group + "/img");
    auto lock = h5_lock();
    std::error_code ec;
    H5Handle file = std::filesystem::exists(path, ec)
                        ? file_open(path, H5F_ACC_RDWR)
                        : H5Handle(check(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), path,
                                         "cannot create"),
                                   H5Fclose);
    if (link_exists(file, group)) fail(path, "group '" + group + "' already exists");
    {
        H5Handle g(check(H5Gcreate2(file, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path,
                         "cannot create group '" + group + "'"),
                   H5Gclose);
        features_write(g, "img", data, path);
        attr_write(g, "label", label, path);
    }
    file.close(path, "cannot finish writing group '" + group + "'");
}

}  // namespace ips
