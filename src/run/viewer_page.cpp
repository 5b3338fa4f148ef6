#include "viewer_page.h"

namespace ips {
namespace {

// OpenSeadragon with its canvas drawer: the WebGL drawer cannot upload file:// tiles (each is
// its own origin to the browser) and would fall back with console errors. The status line counts
// tiles drawn and errors, so a person (and the browser test) sees that the page works.
const char* kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ips: @NAME@</title>
<style>
  html, body { margin: 0; height: 100%; font: 14px/1.4 sans-serif; color: #222; }
  body { display: flex; }
  #side { width: 300px; padding: 12px; box-sizing: border-box; overflow-y: auto; border-right: 1px solid #ccc; }
  #view { flex: 1; background: #f4f4f4; }
  h1 { font-size: 16px; margin: 0 0 8px; word-break: break-all; }
  table { border-collapse: collapse; margin-bottom: 10px; }
  td { padding: 1px 6px 1px 0; }
  #legend { height: 12px; background: linear-gradient(to right, rgb(0,0,128), rgb(0,128,255), rgb(128,255,128), rgb(255,128,0), rgb(128,0,0)); }
  #ticks { display: flex; justify-content: space-between; font-size: 12px; margin-bottom: 10px; }
  ol { padding-left: 24px; margin: 4px 0; }
  li { cursor: pointer; padding: 2px 0; }
  li:hover, li.active { background: #e6eefc; }
  .kept { font-weight: bold; }
  .box { outline: 3px solid #000; box-shadow: 0 0 0 2px #fff; }
  #status { font-size: 12px; color: #666; margin-top: 10px; }
</style>
</head>
<body>
<div id="side">
  <h1 id="name"></h1>
  <table id="prediction"></table>
  <label>Score overlay opacity <input type="range" id="opacity" min="0" max="100" value="50"></label>
  <div id="legend"></div>
  <div id="ticks"><span>0</span><span id="top-score"></span></div>
  <div>Top patches (bold: kept by selection); click to go there</div>
  <ol id="top"></ol>
  <div id="status">loading</div>
</div>
<div id="view"></div>
<script src="openseadragon.min.js"></script>
<script>
"use strict";
const page = @PAGE@;
const status = { slide: 0, scores: 0, failed: 0, errors: 0 };
function statusShow() {
  document.getElementById("status").textContent = "tiles drawn: slide " + status.slide + ", scores " +
    status.scores + "; failed " + status.failed + "; errors " + status.errors;
}
// Errors are counted where a person sees them, besides the browser's console.
window.addEventListener("error", function () { status.errors++; statusShow(); });
const consoleError = console.error.bind(console);
console.error = function () { status.errors++; statusShow(); consoleError.apply(null, arguments); };
function dzi(d) {
  return { Image: { xmlns: "http://schemas.microsoft.com/deepzoom/2008", Url: d.url, Format: d.format,
                    Overlap: String(d.overlap), TileSize: String(d.tile_size),
                    Size: { Width: String(d.width), Height: String(d.height) } } };
}
document.getElementById("name").textContent = page.name;
document.getElementById("top-score").textContent = page.top_score.toPrecision(3);
const table = document.getElementById("prediction");
for (const task of Object.keys(page.prediction)) {
  const p = page.prediction[task];
  const best = p.indexOf(Math.max.apply(null, p));
  const row = table.insertRow();
  row.insertCell().textContent = task;
  row.insertCell().textContent = "class " + best + " (p " + p[best].toFixed(3) + ")";
}
const viewer = OpenSeadragon({
  id: "view", drawer: "canvas", showNavigationControl: false, showNavigator: true,
  tileSources: [ { tileSource: dzi(page.slide) }, { tileSource: dzi(page.scores), opacity: 0.5 } ]
});
viewer.addHandler("tile-drawn", function (e) {
  if (e.tiledImage === viewer.world.getItemAt(0)) status.slide++;
  else status.scores++;
  statusShow();
});
viewer.addHandler("tile-load-failed", function () { status.failed++; statusShow(); });
document.getElementById("opacity").addEventListener("input", function (e) {
  const scores = viewer.world.getItemAt(1);
  if (scores) scores.setOpacity(e.target.value / 100);
});
const box = document.createElement("div");
box.className = "box";
const list = document.getElementById("top");
for (const t of page.top) {
  const li = document.createElement("li");
  li.textContent = "#" + t.rank + "  score " + t.score.toPrecision(3) + "  (" + t.x + ", " + t.y + ")";
  if (t.kept) li.className = "kept";
  li.addEventListener("click", function () {
    const slide = viewer.world.getItemAt(0);
    const rect = slide.imageToViewportRectangle(t.x, t.y, t.w, t.h);
    viewer.viewport.fitBounds(rect);
    viewer.viewport.zoomBy(0.25);  // the patch with its surroundings
    viewer.removeOverlay(box);
    viewer.addOverlay(box, rect);
    for (const other of list.children) other.classList.remove("active");
    li.classList.add("active");
  });
  list.appendChild(li);
}
statusShow();
</script>
</body>
</html>
)HTML";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

}  // namespace

std::string viewer_html(const nlohmann::json& page) {
    std::string html = kPage;
    std::string name = page.value("name", "");
    replace_all(name, "&", "&amp;");
    replace_all(name, "<", "&lt;");
    // JSON inside a script: "</" must not end it.
    std::string data = page.dump();
    replace_all(data, "</", "<\\/");
    replace_all(html, "@NAME@", name);
    replace_all(html, "@PAGE@", data);
    return html;
}

}  // namespace ips
