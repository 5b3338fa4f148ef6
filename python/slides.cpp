// ips.Slide and ips.Tiles: any input ips reads (OpenSlide formats, pyramidal TIFF, plain images)
// with its levels and resolution, and tiles of it (its tissue, its whole grid, or given
// coordinates) as uint8 tensors: one at a time for a torch Dataset, or in batches read ahead on
// the process's reader thread while Python uses the last batch.
#include <future>
#include <memory>

#include "bind.h"
#include "ips/reader_thread.h"
#include "ips/slide.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"

namespace ips::python {
namespace {

struct PySlide {
    SlidePtr slide;
};

// How tiles come out: uint8 RGB as the slide has them, or float32 in [0, 1] normalised by
// mean / std (none: scaled only), computed where they are decoded, as ips' own sources do.
struct TileFormat {
    bool as_float = false;
    Normalization norm;
};

// normalize=None: uint8; "unit": float32 in [0, 1]; "imagenet"; or (mean, std), three values each.
TileFormat format_of(const py::object& normalize) {
    TileFormat f;
    if (normalize.is_none()) return f;
    f.as_float = true;
    if (py::isinstance<py::str>(normalize)) {
        const std::string name = normalize.cast<std::string>();
        if (name == "imagenet") f.norm = normalization_of(Normalize::imagenet);
        else if (name != "unit") throw std::invalid_argument("normalize must be None, 'unit', 'imagenet' or (mean, std), not '" + name + "'");
        return f;
    }
    const auto pair = normalize.cast<std::pair<std::vector<float>, std::vector<float>>>();
    if (pair.first.size() != 3 || pair.second.size() != 3)
        throw std::invalid_argument("normalize=(mean, std) takes three values each, one per RGB channel");
    f.norm = {pair.first, pair.second};
    return f;
}

py::object format_to_python(const TileFormat& f) {
    if (!f.as_float) return py::none();
    if (f.norm.mean.empty()) return py::str("unit");
    return py::make_tuple(f.norm.mean, f.norm.std);
}

// Tiles of one slide at one level: a grid (level-0 coordinates) and the source that reads them,
// as TileFormat says.
struct PyTiles {
    SlidePtr slide;
    TileGrid grid;
    TileFormat format;
    PatchSourcePtr source;
    int64_t batch = 64;

    torch::Tensor read(const torch::Tensor& idx) const { return finish(source->read_stored(idx)); }
    torch::Tensor read_range(int64_t start, int64_t count) const { return finish(source->read_range_stored(start, count)); }
    // Tiles as stored (uint8, or float32 in [0, 1] where they were resized) in the format asked
    // for. A batch read ahead is finished on the thread that uses it: the reader thread's own
    // malloc arena serves nothing above 64 MiB but fresh mmaps, page-faulted on first touch, and
    // float batches made there came 2.3 times slower (measured, docs/PYTHON.md).
    torch::Tensor finish(const torch::Tensor& stored) const {
        if (format.as_float) return source->stored_to_float(stored);
        if (stored.scalar_type() == torch::kByte) return stored;
        return stored.mul(255).round_().to(torch::kByte);  // resized tiles, back to bytes
    }
};

std::shared_ptr<PyTiles> tiles_of(SlidePtr slide, TileGrid grid, TileFormat format, int64_t batch) {
    if (batch <= 0) throw std::invalid_argument("batch must be positive, not " + std::to_string(batch));
    auto t = std::make_shared<PyTiles>();
    t->slide = std::move(slide);
    t->grid = std::move(grid);
    t->format = std::move(format);
    t->source = slide_source_make(t->slide, t->grid, 3, t->format.norm);
    t->batch = batch;
    return t;
}

// One pass over the tiles, `batch` at a time, the next batch always being read.
struct PyTileBatches {
    std::shared_ptr<PyTiles> tiles;
    int64_t start = 0;  // of the batch being read ahead
    std::future<torch::Tensor> ahead;

    void read_ahead() {
        const int64_t n = tiles->grid.coords.size(0);
        if (start >= n) return;
        const int64_t count = std::min(tiles->batch, n - start);
        auto t = tiles;
        const int64_t s = start;
        ahead = reader_thread_submit<torch::Tensor>([t, s, count] { return t->source->read_range_stored(s, count); });
    }
    ~PyTileBatches() {
        if (ahead.valid()) ahead.wait();  // the reader thread must not outlive what it reads into
    }
};

void patch_check(int64_t patch) {
    if (patch <= 0) throw std::invalid_argument("patch must be positive, not " + std::to_string(patch));
}

// The grid ips features and predict read with these data options (tile_grid_make): at `mpp`, tiles
// cover `patch` pixels of that resolution, read at the level closest above it and resized.
TileGrid grid_make(Slide& slide, int64_t patch, int level, const py::object& mpp, const py::object& stride,
                   bool tissue, double min_tissue) {
    patch_check(patch);
    DataOptions d;
    const int64_t step = stride.is_none() ? patch : stride.cast<int64_t>();
    d.patch_size = {patch, patch};
    d.patch_stride = {step, step};
    d.slide_level = level;
    d.slide_mpp = mpp.is_none() ? 0 : mpp.cast<double>();
    d.tissue = tissue;
    d.tissue_min = min_tissue;
    py::gil_scoped_release released;
    return tile_grid_make(slide, d);
}

// The grid of given level-0 coordinates [N, 2] (x, y), e.g. a feature bag's or a sample of a
// tissue grid's.
TileGrid grid_of_coords(const Slide& slide, torch::Tensor coords, int64_t patch, int level) {
    if (coords.dim() != 2 || coords.size(1) != 2)
        throw std::invalid_argument("coords must be [N, 2] level-0 (x, y), got " + c10::str(coords.sizes()));
    if (level < 0 || level >= int(slide_levels(slide).size()))
        throw std::invalid_argument(slide_path(slide) + " has " + std::to_string(slide_levels(slide).size()) +
                                    " level(s), not level " + std::to_string(level));
    TileGrid g;
    g.level = level;
    g.patch = g.stride = patch;
    g.coords = coords.to(torch::kCPU, torch::kLong).contiguous();
    return g;
}

py::tuple tiles_state(const PyTiles& t) {
    return py::make_tuple(path_to_python(slide_path(*t.slide)), t.grid.level, t.grid.patch, t.grid.stride, t.grid.coords, t.grid.cols,
                          t.grid.rows, t.batch, format_to_python(t.format), t.grid.out);
}

std::shared_ptr<PyTiles> tiles_from_state(const py::tuple& s) {
    if (s.size() != 10) throw std::invalid_argument("not a pickled ips.Tiles");
    TileGrid g;
    g.level = s[1].cast<int>();
    g.patch = s[2].cast<int64_t>();
    g.stride = s[3].cast<int64_t>();
    g.coords = s[4].cast<torch::Tensor>();
    g.cols = s[5].cast<int64_t>();
    g.rows = s[6].cast<int64_t>();
    g.out = s[9].cast<int64_t>();
    const std::string path = path_of(s[0]);
    const int64_t batch = s[7].cast<int64_t>();
    TileFormat format = format_of(s[8]);
    return without_gil([&] { return tiles_of(slide_open(path), g, format, batch); });
}

}  // namespace

void slides_bind(py::module_& m) {
    py::class_<PySlide>(m, "Slide", R"(A slide or image as ips reads it: OpenSlide formats (.svs, .ndpi, .mrxs, ...),
pyramidal TIFF, or a plain image (PNG, JPEG, TIFF) as a one-level pyramid.

A missing file raises FileNotFoundError, one libvips cannot read RuntimeError; both name the file.)")
        .def(py::init([](const py::object& file) {
                 const std::string path = path_of(file);
                 return PySlide{without_gil([&] { return slide_open(path); })};
             }),
             py::arg("path"))
        .def_property_readonly("path", [](const PySlide& s) { return path_to_python(slide_path(*s.slide)); })
        .def_property_readonly("loader", [](const PySlide& s) { return slide_loader(*s.slide); },
                               "The libvips loader that reads it: openslideload, tiffload, pngload, ...")
        .def_property_readonly("mpp", [](const PySlide& s) { return slide_mpp(*s.slide); },
                               "Level-0 microns per pixel (0 when the file does not say).")
        .def_property_readonly(
            "dimensions",
            [](const PySlide& s) {
                const auto& l = slide_levels(*s.slide).front();
                return py::make_tuple(l.width, l.height);
            },
            "Level-0 (width, height).")
        .def_property_readonly(
            "levels",
            [](const PySlide& s) {
                py::list out;
                for (const auto& l : slide_levels(*s.slide))
                    out.append(py::dict(py::arg("width") = l.width, py::arg("height") = l.height,
                                        py::arg("downsample") = l.downsample));
                return out;
            },
            "Per level: width, height and downsample (level-0 pixels per pixel).")
        .def(
            "level_for_mpp", [](const PySlide& s, double mpp) { return slide_level_for_mpp(*s.slide, mpp); },
            py::arg("mpp"), "The coarsest level no coarser than `mpp` microns per pixel.")
        .def(
            "read_region",
            [](PySlide& s, int64_t x, int64_t y, int64_t w, int64_t h, int level) {
                return without_gil([&] { return slide_read_region(*s.slide, level, x, y, w, h); });
            },
            py::arg("x"), py::arg("y"), py::arg("width"), py::arg("height"), py::arg("level") = 0,
            "RGB uint8 [3, height, width]: top-left (x, y) in level-0 pixels, the size in pixels of `level`; "
            "outside the image is white.")
        .def(
            "thumbnail",
            [](PySlide& s, int64_t max_side) {
                const Thumbnail t = without_gil([&] { return slide_thumbnail(*s.slide, max_side); });
                return py::make_tuple(t.rgb, t.downsample);
            },
            py::arg("max_side") = 2048, "(RGB uint8 [3, h, w], level-0 pixels per thumbnail pixel).")
        .def(
            "tissue_tiles",
            [](const PySlide& s, int64_t patch, int level, const py::object& mpp, const py::object& stride,
               double min_tissue, int64_t batch, const py::object& normalize) {
                return tiles_of(s.slide, grid_make(*s.slide, patch, level, mpp, stride, true, min_tissue),
                                format_of(normalize), batch);
            },
            py::arg("patch") = 256, py::arg("level") = 0, py::arg("mpp") = py::none(), py::arg("stride") = py::none(),
            py::arg("min_tissue") = 0.01, py::arg("batch") = 64, py::arg("normalize") = py::none(),
            "The tiles with tissue, as `ips tiles`, `ips features` and `ips predict` find them (Otsu on a thumbnail), "
            "at `level`, or at `mpp` microns per pixel: tiles of `patch` pixels at that resolution, read at the "
            "closest level above it and resized where that level's differs (a 40x slide read at 0.5).")
        .def(
            "grid_tiles",
            [](const PySlide& s, int64_t patch, int level, const py::object& mpp, const py::object& stride,
               int64_t batch, const py::object& normalize) {
                return tiles_of(s.slide, grid_make(*s.slide, patch, level, mpp, stride, false, 0), format_of(normalize),
                                batch);
            },
            py::arg("patch") = 256, py::arg("level") = 0, py::arg("mpp") = py::none(), py::arg("stride") = py::none(),
            py::arg("batch") = 64, py::arg("normalize") = py::none(), "Every tile of the grid at `level` (or `mpp`), row by row, tissue or not.")
        .def(
            "tiles",
            [](const PySlide& s, const torch::Tensor& coords, int64_t patch, int level, int64_t batch,
               const py::object& normalize) {
                patch_check(patch);
                return tiles_of(s.slide, grid_of_coords(*s.slide, coords, patch, level), format_of(normalize), batch);
            },
            py::arg("coords"), py::arg("patch") = 256, py::arg("level") = 0, py::arg("batch") = 64,
            py::arg("normalize") = py::none(),
            "The tiles at these level-0 (x, y) coordinates [N, 2], in their order: a feature bag's coords, or "
            "tissue_tiles(...).coords[permutation].")
        .def("__repr__", [](const PySlide& s) {
            const auto& l = slide_levels(*s.slide).front();
            return "ips.Slide(" + std::string(py::repr(path_to_python(slide_path(*s.slide)))) + ", " + std::to_string(l.width) + "x" +
                   std::to_string(l.height) + ", " + std::to_string(slide_levels(*s.slide).size()) + " levels)";
        });

    py::class_<PyTiles, std::shared_ptr<PyTiles>>(m, "Tiles", R"(Tiles of a slide at one level.

len(tiles) tiles; tiles[i] is (coords [2] int64 level-0 (x, y), [3, patch, patch]), so a Tiles is
a map-style torch.utils.data.Dataset (it pickles by its slide's path and coordinates; a DataLoader
worker opens the slide anew). Iterating gives batches (coords [b, 2], [b, 3, patch, patch]) with
the next batch read on ips's reader thread meanwhile. Tiles are uint8 as the slide has them, or,
with normalize= 'unit', 'imagenet' or (mean, std), float32 in [0, 1] then normalised, computed in
parallel as they are decoded. Each batch's coords are a view of tiles.coords (no copy); its pixels
are a tensor ips made and Python now owns (no copy either).)")
        .def("__len__", [](const PyTiles& t) { return t.grid.coords.size(0); })
        .def_property_readonly("coords", [](const PyTiles& t) { return t.grid.coords; },
                               "[N, 2] int64 level-0 (x, y) of every tile, in reading order (the same tensor each time).")
        .def_property_readonly("level", [](const PyTiles& t) { return t.grid.level; })
        .def_property_readonly("patch", [](const PyTiles& t) { return t.grid.out > 0 ? t.grid.out : t.grid.patch; },
                               "Side of the tiles given out, in pixels.")
        .def_property_readonly("patch_level", [](const PyTiles& t) { return t.grid.patch; },
                               "Side of a tile in pixels of its level (more than `patch` where tiles are shrunk to it).")
        .def_property_readonly("batch", [](const PyTiles& t) { return t.batch; }, "Tiles per batch when iterating.")
        .def_property_readonly("normalize", [](const PyTiles& t) { return format_to_python(t.format); },
                               "None (uint8 tiles), 'unit' or (mean, std) (float32 tiles).")
        .def_property_readonly("grid", [](const PyTiles& t) { return py::make_tuple(t.grid.cols, t.grid.rows); },
                               "(columns, rows) of the full grid the tiles are part of ((0, 0) for given coords).")
        .def_property_readonly("slide", [](const PyTiles& t) { return PySlide{t.slide}; })
        .def("__getitem__",
             [](const PyTiles& t, int64_t i) {
                 const int64_t n = t.grid.coords.size(0);
                 if (i < 0) i += n;
                 if (i < 0 || i >= n) throw py::index_error("tile " + std::to_string(i) + " of " + std::to_string(n));
                 auto tile = without_gil([&] { return t.read_range(i, 1).squeeze(0); });
                 return py::make_tuple(t.grid.coords[i], tile);
             })
        .def(
            "read",
            [](const PyTiles& t, const torch::Tensor& idx) {
                const int64_t n = t.grid.coords.size(0);
                const torch::Tensor i = idx.to(torch::kCPU, torch::kLong).reshape({-1});
                if (i.numel() > 0 && (i.min().item<int64_t>() < 0 || i.max().item<int64_t>() >= n))
                    throw py::index_error("tile indices must be in [0, " + std::to_string(n) + ")");
                return without_gil([&] { return t.read(i); });
            },
            py::arg("indices"), "[K, 3, patch, patch] tiles at these indices, read in parallel.")
        .def("__iter__",
             [](const std::shared_ptr<PyTiles>& t) {
                 auto b = std::make_shared<PyTileBatches>();
                 b->tiles = t;
                 b->read_ahead();
                 return b;
             })
        .def(py::pickle([](const PyTiles& t) { return tiles_state(t); }, &tiles_from_state))
        .def("__repr__", [](const PyTiles& t) {
            return "ips.Tiles(" + std::to_string(t.grid.coords.size(0)) + " tiles of " + std::to_string(t.grid.patch) +
                   " px at level " + std::to_string(t.grid.level) + " of " +
                   std::string(py::repr(path_to_python(slide_path(*t.slide)))) + ")";
        });

    py::class_<PyTileBatches, std::shared_ptr<PyTileBatches>>(m, "_TileBatches")
        .def("__iter__", [](const std::shared_ptr<PyTileBatches>& b) { return b; })
        .def("__next__", [](PyTileBatches& b) {
            if (!b.ahead.valid()) throw py::stop_iteration();
            const int64_t s = b.start;
            const torch::Tensor stored = without_gil([&] { return b.ahead.get(); });
            b.start += stored.size(0);
            b.read_ahead();  // the next batch is read while this one is finished and used
            const torch::Tensor tiles = without_gil([&] { return b.tiles->finish(stored); });
            return py::make_tuple(b.tiles->grid.coords.slice(0, s, s + tiles.size(0)), tiles);
        });
}

}  // namespace ips::python
