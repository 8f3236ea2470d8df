// soci-nbd-snapshotter rpull: pull an image through containerd's CRI
// image service, as kubelet does, so that containerd hands the snapshotter
// the labels of remote snapshots and the layers are served lazily
// (docs/snapshotter.md, "Pulling without Kubernetes").  ctr 1.6 cannot set
// those labels; CRI can.  Glue only: references and docker credentials
// are lib/registry's.
#include <config.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <getopt.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "cri-image.grpc.pb.h"
#include "rpull.h"
// (auth.h names a function and a struct alike, which C++ warns about.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
extern "C" {
#include "registry/auth.h"
#include "registry/ref.h"
#include "util/err.h"
}
#pragma GCC diagnostic pop

namespace {

const char *kDefaultCri = "/run/containerd/containerd.sock";

void
usage(FILE *f)
{
  fprintf(f,
"Usage: soci-nbd-snapshotter rpull [OPTIONS] IMAGE\n"
"\n"
"Pull IMAGE through containerd's CRI image service, as kubelet does: with\n"
"the snapshotter configured for CRI, its SOCI-indexed layers are mounted\n"
"lazily instead of downloaded.  The image lands in CRI's namespace\n"
"(k8s.io): ctr -n k8s.io run --snapshotter soci-nbd IMAGE ID CMD.\n"
"\n"
"      --cri-address PATH  the CRI socket: containerd's (default %s),\n"
"                       or the snapshotter's proxy (--cri-address of the\n"
"                       daemon), which also hands the credentials to the\n"
"                       lazy layers\n"
"  -u, --username USER  with --password-stdin: the registry's credentials\n"
"      --password-stdin read the password from the first line of stdin\n"
"  -a, --auth-file FILE a docker config.json (default: $DOCKER_CONFIG,\n"
"                       then ~/.docker/config.json, helpers included)\n"
"  -q, --quiet          print nothing but errors\n"
"  -h, --help           show this help\n"
"\n"
"Prints the image id containerd gives it.  See soci-nbd-snapshotter(8).\n",
          kDefaultCri);
}

} // namespace

int
rpull_main(int argc, char **argv)
{
  enum { OPT_CRI = 256, OPT_PW_STDIN };
  static const struct option opts[] = {
    { "cri-address", required_argument, nullptr, OPT_CRI },
    { "username", required_argument, nullptr, 'u' },
    { "password-stdin", no_argument, nullptr, OPT_PW_STDIN },
    { "auth-file", required_argument, nullptr, 'a' },
    { "quiet", no_argument, nullptr, 'q' },
    { "help", no_argument, nullptr, 'h' },
    { nullptr, 0, nullptr, 0 },
  };
  std::string cri = kDefaultCri, user;
  const char *auth_file = nullptr;
  bool pw_stdin = false, quiet = false;
  int c;

  optind = 1;
  while ((c = getopt_long(argc, argv, "u:a:qh", opts, nullptr)) != -1)
    switch (c) {
    case OPT_CRI: cri = optarg; break;
    case 'u': user = optarg; break;
    case OPT_PW_STDIN: pw_stdin = true; break;
    case 'a': auth_file = optarg; break;
    case 'q': quiet = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  if (optind != argc - 1) {
    fprintf(stderr, "soci-nbd-snapshotter rpull: one IMAGE, please "
            "(--help)\n");
    return 2;
  }
  if (user.empty() != !pw_stdin) {
    fprintf(stderr, "soci-nbd-snapshotter rpull: --username and "
            "--password-stdin go together\n");
    return 2;
  }
  const char *image = argv[optind];
  struct sn_ref ref;

  if (sn_ref_parse(image, &ref) == -1 || ref.kind != SN_REF_REGISTRY) {
    fprintf(stderr, "soci-nbd-snapshotter rpull: %s: %s\n", image,
            ref.kind != SN_REF_REGISTRY ? "not a registry reference"
                                        : sn_error());
    if (ref.kind != SN_REF_REGISTRY)
      sn_ref_clear(&ref);
    return 2;
  }

  runtime::v1::PullImageRequest rq;
  runtime::v1::PullImageResponse resp;
  rq.mutable_image()->set_image(image);
  // Credentials: given, else the docker config's for the registry.
  if (pw_stdin) {
    char *line = sn_auth_read_password(stdin);
    std::string pw = line ? line : "";

    sn_auth_wipe_free(line);
    if (pw.empty()) {
      fprintf(stderr, "soci-nbd-snapshotter rpull: no password on standard "
              "input\n");
      sn_ref_clear(&ref);
      return 2;
    }
    rq.mutable_auth()->set_username(user);
    rq.mutable_auth()->set_password(pw);
    explicit_bzero(&pw[0], pw.size());
  }
  else {
    struct sn_auth_creds cr = {};
    int r = sn_auth_creds_lookup(auth_file, ref.registry, &cr);

    if (r == -1) {
      fprintf(stderr, "soci-nbd-snapshotter rpull: %s\n", sn_error());
      sn_ref_clear(&ref);
      return 1;
    }
    if (r == 1) {
      if (cr.username)
        rq.mutable_auth()->set_username(cr.username);
      if (cr.password)
        rq.mutable_auth()->set_password(cr.password);
      if (cr.identity_token)
        rq.mutable_auth()->set_identity_token(cr.identity_token);
    }
    sn_auth_creds_clear(&cr);
  }
  sn_ref_clear(&ref);

  auto stub = runtime::v1::ImageService::NewStub(grpc::CreateChannel(
    "unix:" + cri, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::Status st = stub->PullImage(&ctx, rq, &resp);
  rq.Clear();                   // (its password)
  if (!st.ok()) {
    fprintf(stderr, "soci-nbd-snapshotter rpull: %s: %s\n", image,
            st.error_message().c_str());
    return 1;
  }
  if (!quiet)
    printf("%s\n", resp.image_ref().c_str());
  return 0;
}
