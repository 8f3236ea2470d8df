// soci-nbd-snapshotter: a containerd proxy snapshotter (docs/snapshotter.md)
// — containerd's snapshots service over gRPC on a Unix socket, glue only:
// every rule is in lib/snapshot/ (snapshots.h), whose error codes become
// the gRPC codes containerd's errdefs expects.
#include <config.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "cri-image.grpc.pb.h"
#include "rpull.h"
#include "snapshots.grpc.pb.h"
#include "snapshot/snap-registry.h"
#include "snapshot/snapshots.h"
extern "C" {
#include "util/err.h"
}

namespace pb = containerd::services::snapshots::v1;
namespace cri = runtime::v1;
using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

namespace {

const char *kDefaultRoot = "/var/lib/soci-nbd/snapshotter";
const char *kDefaultAddress = "/run/soci-nbd/snapshotter.sock";
const char *kDefaultHostsDirs = "/etc/containerd/certs.d";
const char *kDefaultState = "/run/soci-nbd-snapshotter";
const char *kDefaultCriUpstream = "/run/containerd/containerd.sock";
bool verbose;

// lib/snapshot's code as containerd's errdefs maps it to gRPC.
Status
to_status(const char *what, const std::string &key, int err)
{
  static const StatusCode codes[] = {
    StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::ALREADY_EXISTS,
    StatusCode::FAILED_PRECONDITION, StatusCode::INVALID_ARGUMENT,
    StatusCode::INTERNAL, StatusCode::UNAVAILABLE,
  };
  StatusCode c = err > 0 && err <= SN_SNAP_UNAVAILABLE ? codes[err]
                                                       : StatusCode::INTERNAL;

  if (err == SN_SNAP_OK)
    return Status::OK;
  if (c == StatusCode::INTERNAL || verbose)
    fprintf(stderr, "soci-nbd-snapshotter: %s %s: %s\n", what, key.c_str(),
            sn_error());
  return Status(c, sn_error());
}

// Labels of a request, as lib/snapshot takes them (pointing into m).
std::vector<sn_snap_label>
labels_of(const google::protobuf::Map<std::string, std::string> &m)
{
  std::vector<sn_snap_label> v;

  for (const auto &kv : m)
    v.push_back({ const_cast<char *>(kv.first.c_str()),
                  const_cast<char *>(kv.second.c_str()) });
  return v;
}

template <class Resp>
void
put_mounts(struct sn_snap_mounts *m, Resp *resp)
{
  for (size_t i = 0; i < m->n; i++) {
    auto *x = resp->add_mounts();

    x->set_type(m->m[i].type);
    x->set_source(m->m[i].source);
    for (size_t k = 0; k < m->m[i].noptions; k++)
      x->add_options(m->m[i].options[k]);
  }
  sn_snap_mounts_clear(m);
}

void
set_time(google::protobuf::Timestamp *t, int64_t ns)
{
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void
put_info(const struct sn_snap_info *i, pb::Info *out)
{
  out->set_name(i->name);
  out->set_parent(i->parent);
  out->set_kind(static_cast<pb::Kind>(i->kind));
  set_time(out->mutable_created_at(), i->created_ns);
  set_time(out->mutable_updated_at(), i->updated_ns);
  for (size_t k = 0; k < i->nlabels; k++)
    (*out->mutable_labels())[i->labels[k].key] = i->labels[k].value;
}

class Snapshots final : public pb::Snapshots::Service {
public:
  explicit Snapshots(struct sn_snapshots *s) : s_(s) {}

  Status Prepare(ServerContext *, const pb::PrepareSnapshotRequest *rq,
                 pb::PrepareSnapshotResponse *resp) override
  {
    auto l = labels_of(rq->labels());
    struct sn_snap_mounts m;
    int r = sn_snapshots_prepare(s_, rq->key().c_str(), rq->parent().c_str(),
                                 l.data(), l.size(), &m);

    if (r == SN_SNAP_OK)
      put_mounts(&m, resp);
    return to_status("prepare", rq->key(), r);
  }

  Status View(ServerContext *, const pb::ViewSnapshotRequest *rq,
              pb::ViewSnapshotResponse *resp) override
  {
    auto l = labels_of(rq->labels());
    struct sn_snap_mounts m;
    int r = sn_snapshots_view(s_, rq->key().c_str(), rq->parent().c_str(),
                              l.data(), l.size(), &m);

    if (r == SN_SNAP_OK)
      put_mounts(&m, resp);
    return to_status("view", rq->key(), r);
  }

  Status Mounts(ServerContext *, const pb::MountsRequest *rq,
                pb::MountsResponse *resp) override
  {
    struct sn_snap_mounts m;
    int r = sn_snapshots_mounts(s_, rq->key().c_str(), &m);

    if (r == SN_SNAP_OK)
      put_mounts(&m, resp);
    return to_status("mounts", rq->key(), r);
  }

  Status Commit(ServerContext *, const pb::CommitSnapshotRequest *rq,
                google::protobuf::Empty *) override
  {
    auto l = labels_of(rq->labels());

    return to_status("commit", rq->key(),
                     sn_snapshots_commit(s_, rq->name().c_str(),
                                         rq->key().c_str(), l.data(),
                                         l.size()));
  }

  Status Remove(ServerContext *, const pb::RemoveSnapshotRequest *rq,
                google::protobuf::Empty *) override
  {
    return to_status("remove", rq->key(),
                     sn_snapshots_remove(s_, rq->key().c_str()));
  }

  Status Stat(ServerContext *, const pb::StatSnapshotRequest *rq,
              pb::StatSnapshotResponse *resp) override
  {
    struct sn_snap_info i;
    int r = sn_snapshots_stat(s_, rq->key().c_str(), &i);

    if (r == SN_SNAP_OK)
      put_info(&i, resp->mutable_info());
    sn_snap_info_clear(&i);
    return to_status("stat", rq->key(), r);
  }

  Status Update(ServerContext *, const pb::UpdateSnapshotRequest *rq,
                pb::UpdateSnapshotResponse *resp) override
  {
    auto l = labels_of(rq->info().labels());
    std::vector<const char *> paths;
    struct sn_snap_info in = {}, out;
    int r;

    for (const auto &p : rq->update_mask().paths())
      paths.push_back(p.c_str());
    in.name = const_cast<char *>(rq->info().name().c_str());
    in.labels = l.data();
    in.nlabels = l.size();
    r = sn_snapshots_update(s_, &in, paths.data(), paths.size(), &out);
    if (r == SN_SNAP_OK)
      put_info(&out, resp->mutable_info());
    sn_snap_info_clear(&out);
    return to_status("update", rq->info().name(), r);
  }

  Status List(ServerContext *, const pb::ListSnapshotsRequest *rq,
              grpc::ServerWriter<pb::ListSnapshotsResponse> *w) override
  {
    struct Batch {
      grpc::ServerWriter<pb::ListSnapshotsResponse> *w;
      const pb::ListSnapshotsRequest *rq;
      pb::ListSnapshotsResponse resp;
      bool bad;
    } b{ w, rq, {}, false };
    int r;

    // containerd's filters: any of them (each a conjunction) selects.
    for (const auto &f : rq->filters()) {
      bool m;

      if (sn_snap_filter_match(f.c_str(), nullptr, &m) == -1)
        return to_status("list", f, SN_SNAP_INVALID);
    }
    r = sn_snapshots_walk(s_, [](void *opaque,
                                 const struct sn_snap_info *i) -> int {
      auto *bb = static_cast<Batch *>(opaque);
      bool any = bb->rq->filters_size() == 0;

      for (const auto &f : bb->rq->filters()) {
        bool m = false;

        sn_snap_filter_match(f.c_str(), i, &m);
        any = any || m;
      }
      if (!any)
        return 0;
      put_info(i, bb->resp.add_info());
      if (bb->resp.info_size() < 100)
        return 0;
      bool ok = bb->w->Write(bb->resp);
      bb->resp.Clear();
      return ok ? 0 : 1;
    }, &b);
    if (r == SN_SNAP_OK && b.resp.info_size() > 0)
      w->Write(b.resp);
    return to_status("list", "", r);
  }

  Status Usage(ServerContext *, const pb::UsageRequest *rq,
               pb::UsageResponse *resp) override
  {
    int64_t size, inodes;
    int r = sn_snapshots_usage(s_, rq->key().c_str(), &size, &inodes);

    resp->set_size(size);
    resp->set_inodes(inodes);
    return to_status("usage", rq->key(), r);
  }

  Status Cleanup(ServerContext *, const pb::CleanupRequest *,
                 google::protobuf::Empty *) override
  {
    return to_status("cleanup", "", sn_snapshots_cleanup(s_));
  }

private:
  struct sn_snapshots *s_;
};

// The CRI image service, proxied to containerd's: kubelet (its
// --image-service-endpoint) pulls through here, so that the credentials
// of a PullImage are known when containerd prepares the layers' snapshots
// (snap-registry.h).  Every call is forwarded whole, with its deadline.
class ImageProxy final : public cri::ImageService::Service {
public:
  ImageProxy(const std::string &upstream, struct sn_snap_creds *c)
    : stub_(cri::ImageService::NewStub(grpc::CreateChannel(
        "unix:" + upstream, grpc::InsecureChannelCredentials()))),
      creds_(c) {}

  Status PullImage(ServerContext *ctx, const cri::PullImageRequest *rq,
                   cri::PullImageResponse *resp) override
  {
    const std::string &image = rq->image().image();

    if (rq->has_auth()) {
      const cri::AuthConfig &a = rq->auth();
      const char *why;
      int r = sn_snap_creds_put(creds_, image.c_str(), a.username().c_str(),
                                a.password().c_str(), a.auth().c_str(),
                                a.identity_token().c_str(),
                                a.server_address().c_str(), &why);

      if (r == -1 || (r == 1 && (why || !a.registry_token().empty())))
        fprintf(stderr, "soci-nbd-snapshotter: pull of %s: its credentials "
                "are not used for lazy layers: %s\n", image.c_str(),
                r == -1 ? sn_error() : why ? why
                : "a registry_token alone is not supported");
      else if (r == 0 && verbose)
        fprintf(stderr, "soci-nbd-snapshotter: pull of %s: credentials "
                "kept for its layers\n", image.c_str());
    }
    return forward(ctx, &cri::ImageService::Stub::PullImage, *rq, resp);
  }

  Status ListImages(ServerContext *ctx, const cri::ListImagesRequest *rq,
                    cri::ListImagesResponse *resp) override
  {
    return forward(ctx, &cri::ImageService::Stub::ListImages, *rq, resp);
  }

  Status ImageStatus(ServerContext *ctx, const cri::ImageStatusRequest *rq,
                     cri::ImageStatusResponse *resp) override
  {
    return forward(ctx, &cri::ImageService::Stub::ImageStatus, *rq, resp);
  }

  Status RemoveImage(ServerContext *ctx, const cri::RemoveImageRequest *rq,
                     cri::RemoveImageResponse *resp) override
  {
    return forward(ctx, &cri::ImageService::Stub::RemoveImage, *rq, resp);
  }

  Status ImageFsInfo(ServerContext *ctx, const cri::ImageFsInfoRequest *rq,
                     cri::ImageFsInfoResponse *resp) override
  {
    return forward(ctx, &cri::ImageService::Stub::ImageFsInfo, *rq, resp);
  }

private:
  template <typename Rq, typename Resp>
  Status forward(ServerContext *ctx,
                 Status (cri::ImageService::Stub::*call)(grpc::ClientContext *,
                                                         const Rq &, Resp *),
                 const Rq &rq, Resp *resp)
  {
    grpc::ClientContext cc;

    cc.set_deadline(ctx->deadline());
    return ((*stub_).*call)(&cc, rq, resp);
  }

  std::unique_ptr<cri::ImageService::Stub> stub_;
  struct sn_snap_creds *creds_;
};

void
usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd-snapshotter [OPTIONS]\n"
"       soci-nbd-snapshotter rpull [OPTIONS] IMAGE   (rpull --help)\n"
"\n"
"A containerd proxy snapshotter: serves containerd's snapshots API on a\n"
"Unix socket.  Register it in containerd's config.toml:\n"
"\n"
"  [proxy_plugins.soci-nbd]\n"
"    type = \"snapshot\"\n"
"    address = \"%s\"\n"
"\n"
"  -r, --root DIR       snapshots and their metadata (default %s)\n"
"  -a, --address PATH   the socket (default %s)\n"
"      --state DIR      run-time files that end with a reboot: the\n"
"                       credentials of CRI pulls (a tmpfs; default\n"
"                       %s)\n"
"      --soci-nbd PATH  the soci-nbd program that mounts layers served\n"
"                       lazily (default: the one next to this program,\n"
"                       else soci-nbd on PATH)\n"
"      --mount-arg ARG  an option for soci-nbd mount (repeat it: for\n"
"                       example --mount-arg=--plain-http --mount-arg=HOST)\n"
"      --no-remote      never serve layers lazily: containerd unpacks all\n"
"      --config-path DIRS  containerd's registry hosts directories\n"
"                       (hosts.toml; ':'-separated; \"\" for none;\n"
"                       default %s)\n"
"      --cri-address PATH  serve the CRI image service here, proxied to\n"
"                       containerd's, and keep the credentials of its\n"
"                       pulls for the lazy layers (kubelet's\n"
"                       --image-service-endpoint; default: no proxy)\n"
"      --cri-upstream PATH  containerd's CRI socket (default\n"
"                       %s)\n"
"  -v, --verbose        log every refused request, not only failures\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n"
"\n"
"See soci-nbd-snapshotter(8) and docs/snapshotter.md.\n",
          kDefaultAddress, kDefaultRoot, kDefaultAddress, kDefaultState,
          kDefaultHostsDirs,
          kDefaultCriUpstream);
}

// soci-nbd next to this program (an installed pair, or the build tree),
// else the one on PATH.
std::string
default_soci_nbd()
{
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

  if (n > 0) {
    std::string p(self, static_cast<size_t>(n));
    size_t slash = p.rfind('/');

    if (slash != std::string::npos) {
      p = p.substr(0, slash + 1) + "soci-nbd";
      if (access(p.c_str(), X_OK) == 0)
        return p;
    }
  }
  return "soci-nbd";
}

// Make the directory holding the socket and remove a stale socket.
int
prepare_socket(const std::string &path)
{
  struct stat st;
  size_t slash = path.rfind('/');

  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);

    if (mkdir(dir.c_str(), 0700) == -1 && errno != EEXIST) {
      fprintf(stderr, "soci-nbd-snapshotter: %s: %s\n", dir.c_str(),
              strerror(errno));
      return -1;
    }
  }
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      fprintf(stderr, "soci-nbd-snapshotter: %s exists and is not a "
              "socket\n", path.c_str());
      return -1;
    }
    unlink(path.c_str());
  }
  return 0;
}

} // namespace

int
main(int argc, char **argv)
{
  enum { OPT_SOCI_NBD = 256, OPT_MOUNT_ARG, OPT_NO_REMOTE, OPT_CONFIG_PATH,
         OPT_CRI_ADDRESS, OPT_CRI_UPSTREAM, OPT_STATE };
  static const struct option opts[] = {
    { "soci-nbd", required_argument, nullptr, OPT_SOCI_NBD },
    { "mount-arg", required_argument, nullptr, OPT_MOUNT_ARG },
    { "no-remote", no_argument, nullptr, OPT_NO_REMOTE },
    { "config-path", required_argument, nullptr, OPT_CONFIG_PATH },
    { "cri-address", required_argument, nullptr, OPT_CRI_ADDRESS },
    { "cri-upstream", required_argument, nullptr, OPT_CRI_UPSTREAM },
    { "state", required_argument, nullptr, OPT_STATE },
    { "root", required_argument, nullptr, 'r' },
    { "address", required_argument, nullptr, 'a' },
    { "verbose", no_argument, nullptr, 'v' },
    { "help", no_argument, nullptr, 'h' },
    { "version", no_argument, nullptr, 'V' },
    { nullptr, 0, nullptr, 0 },
  };
  std::string root = kDefaultRoot, address = kDefaultAddress, soci_nbd;
  std::string hosts_dirs = kDefaultHostsDirs, cri_address;
  std::string cri_upstream = kDefaultCriUpstream, state = kDefaultState;
  std::vector<std::string> mount_args;
  bool remote = true;
  struct sn_snapshots *s;
  sigset_t set;
  int c, sig;

  if (argc > 1 && strcmp(argv[1], "rpull") == 0)
    return rpull_main(argc - 1, argv + 1);
  while ((c = getopt_long(argc, argv, "r:a:vhV", opts, nullptr)) != -1)
    switch (c) {
    case 'r': root = optarg; break;
    case 'a': address = optarg; break;
    case 'v': verbose = true; break;
    case OPT_SOCI_NBD: soci_nbd = optarg; break;
    case OPT_MOUNT_ARG: mount_args.push_back(optarg); break;
    case OPT_NO_REMOTE: remote = false; break;
    case OPT_CONFIG_PATH: hosts_dirs = optarg; break;
    case OPT_CRI_ADDRESS: cri_address = optarg; break;
    case OPT_CRI_UPSTREAM: cri_upstream = optarg; break;
    case OPT_STATE: state = optarg; break;
    case 'h': usage(stdout); return 0;
    case 'V': printf("soci-nbd-snapshotter %s\n", PACKAGE_VERSION); return 0;
    default: usage(stderr); return 2;
    }
  if (optind < argc) {
    fprintf(stderr, "soci-nbd-snapshotter: unexpected argument %s\n",
            argv[optind]);
    return 2;
  }
  if (root.empty() || root[0] != '/' || address.empty() ||
      address[0] != '/' || (!cri_address.empty() && cri_address[0] != '/') ||
      cri_upstream.empty() || cri_upstream[0] != '/' || state.empty() ||
      state[0] != '/') {
    fprintf(stderr, "soci-nbd-snapshotter: --root, --address, --state, "
            "--cri-address and --cri-upstream must be absolute paths\n");
    return 2;
  }
  if (!cri_address.empty() &&
      (cri_address == address || cri_address == cri_upstream)) {
    fprintf(stderr, "soci-nbd-snapshotter: --cri-address must differ from "
            "--address and --cri-upstream\n");
    return 2;
  }
  // SIGTERM and SIGINT end the server: blocked here, waited for below.
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  umask(077);
  s = sn_snapshots_open(root.c_str());
  if (s == nullptr) {
    fprintf(stderr, "soci-nbd-snapshotter: %s\n", sn_error());
    return 1;
  }
  // Remote snapshots: soci-nbd mount --layer, run for each layer.
  if (soci_nbd.empty())
    soci_nbd = default_soci_nbd();
  std::vector<char *> mount_argv = { const_cast<char *>(soci_nbd.c_str()),
                                     const_cast<char *>("mount"),
                                     const_cast<char *>("-q"),
                                     const_cast<char *>("--lazy-only") };
  for (auto &a : mount_args)
    mount_argv.push_back(const_cast<char *>(a.c_str()));
  mount_argv.push_back(nullptr);
  char *umount_argv[] = { const_cast<char *>(soci_nbd.c_str()),
                          const_cast<char *>("umount"),
                          const_cast<char *>("-q"), nullptr };
  std::unique_ptr<struct sn_snap_creds, void (*)(struct sn_snap_creds *)>
    creds(sn_snap_creds_new(), sn_snap_creds_free);
  if (!creds) {
    sn_snapshots_close(s);
    return 1;
  }
  if (remote) {
    struct sn_snap_remote r = { mount_argv.data(), umount_argv,
                                [](const char *msg) {
                                  fprintf(stderr, "soci-nbd-snapshotter: %s\n",
                                          msg);
                                },
                                hosts_dirs.c_str(), creds.get(),
                                state.c_str() };

    sn_snapshots_set_remote(s, &r);
  }
  // After a reboot the layers of remote snapshots are no longer mounted:
  // mount them again before any request (logged; one that cannot be is
  // refused, never served empty).
  if (int n = sn_snapshots_restore(s))
    fprintf(stderr, "soci-nbd-snapshotter: %d remote snapshot%s "
            "unavailable: the layer is not mounted and could not be mounted "
            "again\n", n, n == 1 ? "" : "s");
  if (prepare_socket(address) == -1 ||
      (!cri_address.empty() && prepare_socket(cri_address) == -1)) {
    sn_snapshots_close(s);
    return 1;
  }
  // The CRI image-service proxy: a server of its own, on its own socket.
  std::unique_ptr<ImageProxy> proxy;
  std::unique_ptr<grpc::Server> cri_server;
  if (!cri_address.empty()) {
    grpc::ServerBuilder cb;

    proxy.reset(new ImageProxy(cri_upstream, creds.get()));
    cb.AddListeningPort("unix:" + cri_address,
                        grpc::InsecureServerCredentials());
    cb.RegisterService(proxy.get());
    cri_server = cb.BuildAndStart();
    if (!cri_server) {
      fprintf(stderr, "soci-nbd-snapshotter: cannot listen on %s\n",
              cri_address.c_str());
      sn_snapshots_close(s);
      return 1;
    }
    fprintf(stderr, "soci-nbd-snapshotter: CRI image service on %s, "
            "proxied to %s\n", cri_address.c_str(), cri_upstream.c_str());
  }
  Snapshots service(s);
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + address, grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    fprintf(stderr, "soci-nbd-snapshotter: cannot listen on %s\n",
            address.c_str());
    sn_snapshots_close(s);
    return 1;
  }
  fprintf(stderr, "soci-nbd-snapshotter: serving %s on %s (%s)\n",
          root.c_str(), address.c_str(),
          remote ? ("layers served lazily by " + soci_nbd).c_str()
                 : "no remote snapshots");
  std::thread waiter([&server, &cri_server, &set, &sig]() {
    sigwait(&set, &sig);
    if (cri_server)
      cri_server->Shutdown();
    server->Shutdown();
  });
  server->Wait();
  waiter.join();
  unlink(address.c_str());
  if (!cri_address.empty())
    unlink(cri_address.c_str());
  sn_snapshots_close(s);
  fprintf(stderr, "soci-nbd-snapshotter: stopped (signal %d)\n", sig);
  return 0;
}
