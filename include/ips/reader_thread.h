// One thread for the whole process that reads patches ahead while the caller computes: selection
// reads the next chunk there while it encodes the current one, and the Python module's tile
// batches are read there while Python consumes the last. It lives as long as the process: a thread
// per chunk would also start a new OpenMP team per chunk (libgomp keeps a pool per master
// thread), and libvips keeps buffers per thread that a thread's exit leaks: measured, peak memory
// grew by 26 KB per patch read that way.
#pragma once

#include <functional>
#include <future>
#include <memory>

namespace ips {

// Queues `work`; the thread runs queued work in order. Exceptions must not leave `work`.
void reader_thread_run(std::function<void()> work);

// Queues `work` and returns its result (or its exception) as a future.
template <typename T>
std::future<T> reader_thread_submit(std::function<T()> work) {
    auto task = std::make_shared<std::packaged_task<T()>>(std::move(work));
    auto result = task->get_future();
    reader_thread_run([task] { (*task)(); });  // a packaged task: exceptions go to its future
    return result;
}

}  // namespace ips
