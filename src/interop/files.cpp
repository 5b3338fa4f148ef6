#include "ips/files.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace ips {

void text_write_atomic(const std::string& path, const std::string& text) {
    namespace fs = std::filesystem;
    const fs::path tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    std::error_code ec;
    if (out.fail() || (fs::rename(tmp, path, ec), ec)) {
        fs::remove(tmp, ec);
        throw std::runtime_error("cannot write '" + path + "'");
    }
}

std::string file_read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in.is_open()) throw std::runtime_error("cannot open '" + path + "'");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
    return bytes;
}

}  // namespace ips
