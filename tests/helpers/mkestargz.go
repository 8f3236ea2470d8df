// soci-nbd tests: make an eStargz layer with the stargz-snapshotter's own
// Go package (Debian's golang-github-containerd-stargz-snapshotter-dev),
// built by the test with GOPATH=/usr/share/gocode, offline.
//
//	mkestargz IN.tar OUT.tar.gz [CHUNK_SIZE] [PRIORITIZED_FILE...]
//
// writes the layer and OUT.tar.gz.annotations.json holding the
// containerd.io/snapshot/stargz/toc.digest annotation its manifest
// descriptor needs; prioritized files (estargz.WithPrioritizedFiles) come
// first and are followed by the prefetch landmark.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: mkestargz IN.tar OUT.tar.gz [CHUNK_SIZE] [PRIORITIZED_FILE...]")
		os.Exit(2)
	}
	in, err := os.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	fi, err := in.Stat()
	if err != nil {
		fail(err)
	}
	opts := []estargz.Option{}
	if len(os.Args) > 3 {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err)
		}
		opts = append(opts, estargz.WithChunkSize(n))
	}
	if len(os.Args) > 4 {
		opts = append(opts, estargz.WithPrioritizedFiles(os.Args[4:]))
	}
	blob, err := estargz.Build(io.NewSectionReader(in, 0, fi.Size()), opts...)
	if err != nil {
		fail(err)
	}
	defer blob.Close()
	out, err := os.Create(os.Args[2])
	if err != nil {
		fail(err)
	}
	if _, err := io.Copy(out, blob); err != nil {
		fail(err)
	}
	if err := out.Close(); err != nil {
		fail(err)
	}
	ann, _ := json.Marshal(map[string]string{
		estargz.TOCJSONDigestAnnotation: blob.TOCDigest().String(),
	})
	if err := os.WriteFile(os.Args[2]+".annotations.json", ann, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkestargz:", err)
	os.Exit(1)
}
