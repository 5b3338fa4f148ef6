#include "ips/reader_thread.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace ips {
namespace {

class ReaderThread {
public:
    static ReaderThread& get() {
        static ReaderThread* one = new ReaderThread;  // never destroyed: it waits for work until exit
        return *one;
    }
    void run(std::function<void()> work) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queue_.push_back(std::move(work));
        }
        ready_.notify_one();
    }

private:
    ReaderThread() : thread_([this] { loop(); }) { thread_.detach(); }
    void loop() {
        for (;;) {
            std::function<void()> work;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                ready_.wait(lock, [this] { return !queue_.empty(); });
                work = std::move(queue_.front());
                queue_.pop_front();
            }
            work();
        }
    }
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::function<void()>> queue_;
    std::thread thread_;
};

}  // namespace

void reader_thread_run(std::function<void()> work) { ReaderThread::get().run(std::move(work)); }

}  // namespace ips
