#pragma once
// The admin endpoint (design.md §11): a small HTTP/1.1 server on the control thread.
//   GET /         the status page (proxy/status_page.hpp), for a browser
//   GET /status   JSON      GET /metrics  Prometheus text
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when every backend is ready, else 503 with a one-line reason
//   POST /reload  re-read the config file, as SIGHUP does

#include <memory>
#include <string>

#include <asio.hpp>

namespace respfence::proxy {

class runtime;

struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Routes one request; separate from the socket code so that it can be tested alone.
http_response admin_route(runtime& rt, const std::string& method, const std::string& path);

class admin_server {
 public:
  admin_server(asio::io_context& io, runtime& rt);
  bool listen(const std::string& address, std::string& why);
  void close();

 private:
  void accept();

  runtime& rt_;
  asio::basic_socket_acceptor<asio::generic::stream_protocol> acceptor_;
  bool closed_ = false;
};

}  // namespace respfence::proxy
