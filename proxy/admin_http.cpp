#include "proxy/admin_http.hpp"

#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "proxy/status_page.hpp"

namespace respfence::proxy {

namespace {

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 400:
      return "Bad Request";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// One connection: read the request head, answer, close.
class admin_conn : public std::enable_shared_from_this<admin_conn> {
 public:
  admin_conn(asio::generic::stream_protocol::socket s, runtime& rt)
      : sock_(std::move(s)), rt_(rt), timer_(sock_.get_executor()) {}

  void start() {
    // A client that connects and says nothing is cut off.
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        self->sock_.close(ignored);
      }
    });
    read();
  }

 private:
  void read() {
    sock_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](
                                                    const asio::error_code& ec, size_t n) {
      if (ec) return;
      self->req_.append(self->chunk_.data(), n);
      if (self->req_.find("\r\n\r\n") != std::string::npos) {
        self->answer();
      } else if (self->req_.size() > 8192) {
        self->respond({400, "text/plain; charset=utf-8", "request too large\n"});
      } else {
        self->read();
      }
    });
  }

  void answer() {
    const size_t sp1 = req_.find(' ');
    const size_t sp2 = sp1 == std::string::npos ? sp1 : req_.find(' ', sp1 + 1);
    if (sp2 == std::string::npos) {
      respond({400, "text/plain; charset=utf-8", "bad request\n"});
      return;
    }
    std::string path = req_.substr(sp1 + 1, sp2 - sp1 - 1);
    if (const size_t q = path.find('?'); q != std::string::npos) path.resize(q);
    respond(admin_route(rt_, req_.substr(0, sp1), path));
  }

  void respond(const http_response& r) {
    out_ = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
           "\r\nContent-Type: " + r.content_type +
           "\r\nContent-Length: " + std::to_string(r.body.size()) +
           "\r\nConnection: close\r\n\r\n" + r.body;
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this()](const asio::error_code&, size_t) {
                        asio::error_code ignored;
                        self->sock_.shutdown(asio::socket_base::shutdown_both, ignored);
                        self->sock_.close(ignored);
                        self->timer_.cancel();
                      });
  }

  asio::generic::stream_protocol::socket sock_;
  runtime& rt_;
  asio::steady_timer timer_;
  std::array<char, 2048> chunk_{};
  std::string req_;
  std::string out_;
};

}  // namespace

http_response admin_route(runtime& rt, const std::string& method, const std::string& path) {
  const bool get = method == "GET" || method == "HEAD";
  if (path == "/") {
    if (!get) return {405, "text/plain; charset=utf-8", "use GET\n"};
    return {200, "text/html; charset=utf-8", std::string(k_status_page)};
  }
  if (path == "/healthz") {
    if (!get) return {405, "text/plain; charset=utf-8", "use GET\n"};
    return {200, "text/plain; charset=utf-8", "ok\n"};
  }
  if (path == "/readyz") {
    if (!get) return {405, "text/plain; charset=utf-8", "use GET\n"};
    std::string why;
    if (rt.all_ready(why)) return {200, "text/plain; charset=utf-8", "ready\n"};
    return {503, "text/plain; charset=utf-8", why + "\n"};
  }
  if (path == "/status") {
    if (!get) return {405, "text/plain; charset=utf-8", "use GET\n"};
    return {200, "application/json", rt.status_json()};
  }
  if (path == "/metrics") {
    if (!get) return {405, "text/plain; charset=utf-8", "use GET\n"};
    return {200, "text/plain; version=0.0.4; charset=utf-8", rt.metrics_text()};
  }
  if (path == "/reload") {
    if (method != "POST") return {405, "text/plain; charset=utf-8", "use POST\n"};
    log::info("reload_requested", {{"source", "admin"}});
    bool ok = false;
    std::string report = rt.reload(&ok);
    return {ok ? 200 : 400, "text/plain; charset=utf-8", report + "\n"};
  }
  return {404, "text/plain; charset=utf-8",
          "not found; try / /status /metrics /healthz /readyz, or POST /reload\n"};
}

admin_server::admin_server(asio::io_context& io, runtime& rt)
    : rt_(rt), acceptor_(io) {}

bool admin_server::listen(const std::string& address, std::string& why) {
  const auto ep = resolve_endpoint(address, &why);
  if (!ep) return false;
  asio::error_code ec;
  acceptor_.open(ep->protocol(), ec);
  if (!ec && address.rfind("unix:", 0) != 0) {
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) acceptor_.bind(*ep, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec) {
    why = ec.message();
    return false;
  }
  accept();
  return true;
}

void admin_server::close() {
  closed_ = true;
  asio::error_code ignored;
  acceptor_.close(ignored);
}

void admin_server::accept() {
  acceptor_.async_accept([this](const asio::error_code& ec,
                                asio::generic::stream_protocol::socket s) {
    if (closed_ || ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<admin_conn>(std::move(s), rt_)->start();
    accept();
  });
}

}  // namespace respfence::proxy
