// Prediction for images, slides and feature bags: probabilities per task, the selected patches
// with their attention, a score for every patch (select.h patch_scores), the pictures and files
// of explain.h, and the records and predictions.csv of a job over many inputs. Inputs are opened
// as training opens them (input_open.h): slides and pyramids tile by tile, so memory is bounded
// by the tile grid and the chunk size, never by the slide's pixels.
#pragma once

#include <nlohmann/json.hpp>

#include "ips/explain.h"
#include "ips/inputs.h"
#include "ips/model.h"

namespace ips {

// Where one prediction's time went, in seconds.
struct PredictTimes {
    double open = 0;       // opening the file, tissue detection, the tile grid
    double select = 0;     // selection over all patches (reading + encoding + scoring)
    double encode = 0;     // of which the encoder computed (device synchronised)
    double read_wait = 0;  // of which selection waited for a chunk still being read
    double aggregate = 0;  // reading the M kept patches again, the forward pass, every patch's score
    double write = 0;      // the output files
    ExplainTimes outputs;  // of which each of explain.h's outputs
    int64_t patches = 0;
    // The encoder's busy share of selection: encode / select.
    double encoder_busy() const { return select > 0 ? encode / select : 0; }
};

struct Prediction {
    std::string input;
    int64_t N = 0;                                  // patches in the input's grid
    std::vector<std::string> task_names;            // config task order
    std::vector<std::vector<double>> probs;         // per task [n_class]
    std::vector<int64_t> selected;                  // grid indices, most attended first
    std::vector<double> scores;                     // their attention (mean over heads and tokens)
    std::string heatmap;                            // PNG written by PredictOptions::heatmap, or empty
    ScoredPatches patches;                          // every patch's score, rank, kept
    PredictTimes times;
};

struct PredictOptions {
    std::string heatmap;      // write the heat map (thumbnail, legend, kept outlined) here, "" for none
    std::string explain_dir;  // write the explain.h outputs into this folder, "" for none
    ExplainOptions explain;
    bool progress = false;    // a progress bar over the input's patches on stderr
};

// Opens the input (image, slide or bag; input_open), selects, classifies, scores every patch and
// writes what `opt` asks for. Throws naming the file (or config key) when it cannot be read.
Prediction predict_input(IPSNet& net, const Config& cfg, const torch::Device& device, const std::string& path,
                         const PredictOptions& opt = {});

// {"image", "N", "predictions": {task: [p...]}, "selected", "scores", ["heatmap"]}
nlohmann::json prediction_to_json(const Prediction& p);

// `ips predict --out DIR` keeps one record per input, DIR/<stem>.json: prediction_to_json on one
// line, as --json prints it, and the input's outputs in DIR/<stem>/. The records are the job's
// result: one process or several ranks each taking a share of the inputs write the same files. A
// rerun keeps complete records, so a killed job resumes.
std::string prediction_record_path(const std::string& out_dir, const std::string& input);
std::string prediction_outputs_dir(const std::string& out_dir, const std::string& input);

// Whether `record` is a finished prediction of `input` with this config: it parses as one JSON
// object naming this input, with N, every task of the config with n_class probabilities, and as
// many scores as selected patches; when a heat map is asked for (`heatmap_out`, "" for none), it
// names that file, which is a whole PNG; and every output the options ask for is in `outputs_dir`.
// Outputs are written before the record, each atomically, so a kill leaves no record of a missing
// output. Which weights made the prediction is not recorded: after changing them, use another DIR.
OutputCheck prediction_record_check(const std::string& record, const std::string& input, const Config& cfg,
                                    const std::string& heatmap_out, const std::string& outputs_dir = "",
                                    const ExplainOptions& explain = {});

struct PredictionRecord {
    std::string path;          // the record's file
    nlohmann::json json;       // its content: prediction_to_json of the input
    bool already_done = false;
    std::string redone_why;    // an incomplete record was there and was made again: what was wrong
    PredictTimes times;        // of a prediction made now
    ScoredPatches patches;     // of a prediction made now: every patch's score (undefined when already done)
};

// predict_input with a record in `out_dir` and the outputs in prediction_outputs_dir: a complete
// record is read back rather than predicted again; otherwise the prediction is made, its outputs
// written, and then its record (atomically). Folders are made only then: an input that fails
// leaves nothing.
PredictionRecord predict_recorded(IPSNet& net, const Config& cfg, const torch::Device& device,
                                  const std::string& input, const std::string& out_dir, const PredictOptions& opt = {});

// BASE for one input; BASE's stem + "_" + the input's stem (input_stem) for several.
std::string heatmap_path_for(const std::string& base, const std::string& input, size_t n_inputs);

// The inputs of a job: the paths given, each folder among them replaced by the images, slides and
// bags in it (by extension, sorted), then the first column of `csv` ("" for none; quoted cells as
// predictions.csv writes them; a first row "path", in any case, is a header; relative paths are
// relative to the CSV's folder). A missing file stays in the list: it is that input's error,
// reported with the others. Throws naming an unreadable CSV, an empty folder or an empty list.
std::vector<std::string> predict_inputs_list(const std::vector<std::string>& paths, const std::string& csv);

// DIR/predictions.csv from the complete records of `inputs` (in their order): a row per input,
// "input", then for each task its probabilities "<task>_p<k>" and its predicted class
// "<task>_class" (argmax for softmax tasks; the classes with p >= 0.5, ';'-separated, for
// sigmoid tasks). Written atomically, under an flock of DIR/.predictions.lock: ranks that each
// write it when their share is done leave the table of the last one, which has every record.
// Nothing is written where DIR does not exist (no input was predicted). Returns the number of rows.
int64_t predictions_csv_write(const std::string& out_dir, const std::vector<std::string>& inputs, const Config& cfg);

}  // namespace ips
