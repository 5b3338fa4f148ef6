#include "ips/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace ips {
namespace {

// A port the kernel says is free on loopback now. Another process could take it before rank 0
// binds it; rank 0 then reports the port in use, naming MASTER_PORT to set instead.
int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error(std::string("cannot open a socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        close(fd);
        throw std::runtime_error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
    }
    close(fd);
    return ntohs(addr.sin_port);
}

std::vector<pid_t> g_workers;  // for the signal handler
volatile sig_atomic_t g_asked_to_stop = 0;  // the SIGINT or SIGTERM that reached the launcher, or 0

void forward_signal(int sig) {
    for (pid_t p : g_workers)
        if (p > 0) kill(p, sig);
}

// Workers are asked to stop with SIGTERM whatever the launcher got. A Ctrl-C from the terminal also
// reaches them directly (one foreground process group), and a second SIGINT ends a worker at once
// instead of after its checkpoint: passing SIGINT on would be that second one.
void on_stop_signal(int sig) {
    g_asked_to_stop = sig;
    forward_signal(SIGTERM);
}

std::string status_text(int status) {
    if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

}  // namespace

std::vector<std::string> args_without_launch(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--nproc-per-node") {
            ++i;
            continue;
        }
        if (args[i].rfind("--nproc-per-node=", 0) == 0) continue;
        out.push_back(args[i]);
    }
    return out;
}

int workers_launch(int nproc, const std::vector<std::string>& worker_args) {
    if (nproc < 1) throw std::runtime_error("--nproc-per-node must be at least 1");
    const char* port_env = std::getenv("MASTER_PORT");
    const std::string port = port_env && *port_env ? port_env : std::to_string(free_port());
    std::vector<char*> argv;
    for (const auto& a : worker_args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    g_workers.assign(static_cast<size_t>(nproc), 0);
    g_asked_to_stop = 0;
    for (int r = 0; r < nproc; ++r) {
        const pid_t pid = fork();
        if (pid < 0) throw std::runtime_error(std::string("cannot start a worker: ") + std::strerror(errno));
        if (pid == 0) {
            setenv("RANK", std::to_string(r).c_str(), 1);
            setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
            setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port.c_str(), 1);
            execv("/proc/self/exe", argv.data());
            std::fprintf(stderr, "ips: cannot start worker %d: %s\n", r, std::strerror(errno));
            _exit(127);
        }
        g_workers[static_cast<size_t>(r)] = pid;
    }
    struct sigaction sa{}, old_int{}, old_term{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int result = 0, running = nproc;
    while (running > 0) {
        int status = 0;
        const pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int rank = -1;
        for (int r = 0; r < nproc; ++r)
            if (g_workers[static_cast<size_t>(r)] == pid) rank = r;
        if (rank < 0) continue;
        g_workers[static_cast<size_t>(rank)] = 0;
        --running;
        const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        // Workers asked to stop save a checkpoint and end with 128 + signal: wait for all of them.
        if (failed && result == 0 && g_asked_to_stop) {
            result = 128 + g_asked_to_stop;  // as the signal the launcher got would have ended it
        } else if (failed && result == 0) {
            result = exit_code_of(status);
            std::fprintf(stderr, "ips: rank %d %s; stopping the other %d rank(s)\n", rank, status_text(status).c_str(),
                         running);
            forward_signal(SIGTERM);
            // Workers that do not stop within 10 s are killed.
            std::thread([] {
                std::this_thread::sleep_for(std::chrono::seconds(10));
                forward_signal(SIGKILL);
            }).detach();
        }
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    return result;
}

}  // namespace ips
