// soci-nbd tests: pull an image through containerd's CRI plugin, as the
// kubelet does (ImageService.PullImage over containerd's socket), so that
// containerd hands the snapshotter the labels remote snapshotters get.
//
//   cri-pull SOCKET IMAGE [USER PASSWORD]
//   cri-pull SOCKET --list
//
// Prints the image reference CRI returns and exits 0, or "CODE: message"
// on stderr and exits 1.  --list prints the size and a hash of
// ListImages' answer, as it came over the wire: the same through a proxy
// that forwards it whole.
#include <cstdio>
#include <functional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "cri-image.grpc.pb.h"

int
main(int argc, char **argv)
{
  if (argc != 3 && argc != 5) {
    fprintf(stderr, "usage: cri-pull SOCKET IMAGE [USER PASSWORD]\n"
            "       cri-pull SOCKET --list\n");
    return 2;
  }
  auto stub = runtime::v1::ImageService::NewStub(grpc::CreateChannel(
    std::string("unix:") + argv[1], grpc::InsecureChannelCredentials()));
  if (std::string(argv[2]) == "--list") {
    runtime::v1::ListImagesRequest lq;
    runtime::v1::ListImagesResponse lr;
    grpc::ClientContext lctx;
    grpc::Status st = stub->ListImages(&lctx, lq, &lr);
    std::string wire;

    if (!st.ok()) {
      fprintf(stderr, "%d: %s\n", static_cast<int>(st.error_code()),
              st.error_message().c_str());
      return 1;
    }
    lr.SerializeToString(&wire);
    printf("%zu bytes, hash %zx\n", wire.size(),
           std::hash<std::string>{}(wire));
    return 0;
  }
  runtime::v1::PullImageRequest rq;
  runtime::v1::PullImageResponse r;
  grpc::ClientContext ctx;

  rq.mutable_image()->set_image(argv[2]);
  if (argc == 5) {
    rq.mutable_auth()->set_username(argv[3]);
    rq.mutable_auth()->set_password(argv[4]);
  }
  grpc::Status st = stub->PullImage(&ctx, rq, &r);
  if (!st.ok()) {
    fprintf(stderr, "%d: %s\n", static_cast<int>(st.error_code()),
            st.error_message().c_str());
    return 1;
  }
  printf("%s\n", r.image_ref().c_str());
  return 0;
}
