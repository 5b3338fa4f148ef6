// safetensors files (the weight format of Hugging Face hubs and timm) read and written without
// Python or the safetensors library. The format: an 8-byte little-endian header length N, N bytes
// of JSON naming each tensor's dtype, shape and byte range, then the raw little-endian row-major
// bytes. Unlike a torch.save file there is no pickle, so reading runs no program from the file.
#pragma once

#include <map>
#include <string>

#include "ips/torch_file.h"  // NamedTensors

namespace ips {

// Reads every tensor of a safetensors file, in the order of their byte ranges in the file (the
// header's JSON object has no order a reader can rely on; only empty tensors can share an offset,
// and they come before the tensor starting there, by name). Tensors are on the CPU, contiguous,
// with their stored dtype (F16 and BF16 stay kHalf and kBFloat16), and own their memory: the data
// section is read once and the tensors share that buffer, each its own disjoint range, until the
// last one goes (a tensor whose range is not aligned to its element size gets a copy of its own).
// `metadata`, when given, receives the header's "__metadata__" strings (replacing its contents).
//
// Accepted although the reference implementation refuses them: gaps between byte ranges and bytes
// after the last one (never read). Refused: byte ranges that overlap (an empty range overlaps
// nothing), BOOL bytes other than 0 and 1, dtypes outside F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
// Throws std::runtime_error naming the file and, for a bad entry, its key: a missing or short
// file, a header length beyond the file or over 100 MB, a header that is not a JSON object, an
// entry without dtype / shape / data_offsets or with values of the wrong JSON type, an unknown
// dtype, a negative or non-integer size, a shape too large to count, offsets with begin > end or
// past the data section, a byte range whose size is not the element count times the dtype size.
NamedTensors safetensors_read(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// Whether the file looks like a safetensors file, from its first 9 bytes: a header length that
// fits the file and the 100 MB limit, and a header starting with '{'. Never throws; a missing or
// unreadable file is simply not one.
bool safetensors_is(const std::string& path);

// Writes the tensors in the given order, back to back (no gaps, so Python's safetensors reads the
// file too), each as a contiguous little-endian copy from the CPU; the JSON header lists
// "__metadata__" first (only when `metadata` is not empty), then the tensors in order, padded
// with spaces to a multiple of 8 bytes. Written through AtomicFile, so a crash or a full disk
// never leaves a partial file under `path`. Throws std::runtime_error naming the file and the
// key for an undefined tensor, a repeated name, the reserved name "__metadata__", a name or
// metadata text that is not UTF-8, or a dtype safetensors_read would not accept.
void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The tensors of a weights file of either kind: safetensors_read when safetensors_is says so or
// the name ends in ".safetensors" (so a damaged one gets the safetensors reader's message),
// otherwise torch_file_read with its own errors (a legacy torch.save file among them).
NamedTensors weights_read(const std::string& path);

}  // namespace ips
