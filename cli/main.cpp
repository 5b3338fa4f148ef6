// ips: the command-line tool. Subcommands come from one table (command.h).
#include <c10/util/Exception.h>

#include <cstdio>

#include "command.h"
#include "ips/interrupt.h"
#include "ips/runtime.h"

int main(int argc, char** argv) {
    CLI::App app{"ips: Iterative Patch Selection for images of any size"};
    ips::cli::process_args_set(argc, argv);
    app.require_subcommand(1);
    app.set_version_flag("--version", [] { return ips::runtime_versions(); }, "versions of ips, libtorch, CUDA and cuDNN, and the devices seen");
    for (const auto& cmd : ips::cli::command_table()) cmd.setup(app.add_subcommand(cmd.name, cmd.help));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const ips::cli::WorkersEnded& done) {
        return done.code;
    } catch (const ips::Interrupted& stop) {
        // What was worth keeping is saved: end as the signal would have, so a scheduler sees why.
        std::fprintf(stderr, "ips: %s\n", stop.what());
        return 128 + stop.signal;
    } catch (const c10::Error& e) {
        // libtorch's own checks: the message, not libtorch's C++ backtrace.
        std::fprintf(stderr, "ips: error: %s\n", e.what_without_backtrace());
        return 1;
    } catch (const std::exception& e) {
        // Subcommand callbacks run inside parse(): their errors end here with the message.
        std::fprintf(stderr, "ips: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
