// estargz-write: a layer as containerd's stargz-snapshotter `estargz`
// library writes it (what BuildKit, nerdctl and ctr-remote push), for
// ocisync's layer-format tests. Built by e2e/setup/install-producers.sh from
// Debian's golang-github-containerd-stargz-snapshotter-dev, offline.
//
//	estargz-write [-zstdchunked] [-chunk-size N] [-prioritize a,b] IN.tar OUT
//
// Writes the layer to OUT and prints one JSON object: its media type, digest,
// size and the annotations a producer puts on its descriptor (the TOC
// digest, and for zstd:chunked the manifest checksum and position).
//
// estargz-write -verify [-zstdchunked] LAYER TOC-DIGEST
//
// Opens LAYER with the library's reader, checks its TOC against TOC-DIGEST
// and every file's chunks against their digests, and prints each regular
// file as "name sha256:...".
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

func main() {
	zstdChunked := flag.Bool("zstdchunked", false, "zstd:chunked instead of gzip")
	chunkSize := flag.Int("chunk-size", 0, "chunk size (0: the library's default)")
	prioritize := flag.String("prioritize", "", "comma-separated files to put first (a prefetch landmark follows them)")
	verify := flag.Bool("verify", false, "read LAYER back and check it against TOC-DIGEST")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: estargz-write [-zstdchunked] [-chunk-size N] [-prioritize a,b] IN.tar OUT | -verify LAYER TOC-DIGEST")
		os.Exit(2)
	}
	var err error
	if *verify {
		err = check(flag.Arg(0), flag.Arg(1), *zstdChunked)
	} else {
		err = write(flag.Arg(0), flag.Arg(1), *zstdChunked, *chunkSize, *prioritize)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "estargz-write:", err)
		os.Exit(1)
	}
}

func write(in, out string, zstdChunked bool, chunkSize int, prioritize string) error {
	f, sr, err := open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	annotations := map[string]string{}
	mediaType := "application/vnd.oci.image.layer.v1.tar+gzip"
	var opts []estargz.Option
	if zstdChunked {
		mediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
		// as the library's own zstd:chunked converter pairs them
		opts = append(opts, estargz.WithCompression(struct {
			*zstdchunked.Compressor
			*zstdchunked.Decompressor
		}{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault, Metadata: annotations}, new(zstdchunked.Decompressor)}))
	}
	if chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(chunkSize))
	}
	if prioritize != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(prioritize, ",")))
	}
	blob, err := estargz.Build(sr, opts...)
	if err != nil {
		return err
	}
	defer blob.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(o, h), blob)
	if err != nil {
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	annotations[estargz.TOCJSONDigestAnnotation] = blob.TOCDigest().String()
	annotations[estargz.StoreUncompressedSizeAnnotation] = fmt.Sprint(sr.Size())
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"mediaType":   mediaType,
		"digest":      fmt.Sprintf("sha256:%x", h.Sum(nil)),
		"size":        n,
		"diffID":      blob.DiffID().String(),
		"annotations": annotations,
	})
}

func check(layer, tocDigest string, zstdChunked bool) error {
	f, sr, err := open(layer)
	if err != nil {
		return err
	}
	defer f.Close()
	var opts []estargz.OpenOption
	if zstdChunked {
		opts = append(opts, estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	}
	r, err := estargz.Open(sr, opts...)
	if err != nil {
		return err
	}
	want, err := digest.Parse(tocDigest)
	if err != nil {
		return err
	}
	if _, err := r.VerifyTOC(want); err != nil {
		return err
	}
	root, ok := r.Lookup("")
	if !ok {
		return fmt.Errorf("no root in the TOC")
	}
	var lines []string
	var walk func(dir string, e *estargz.TOCEntry) error
	walk = func(dir string, e *estargz.TOCEntry) (werr error) {
		e.ForeachChild(func(base string, c *estargz.TOCEntry) bool {
			name := strings.TrimPrefix(dir+"/"+base, "/")
			switch c.Type {
			case "dir":
				werr = walk(name, c)
			case "reg":
				sr, err := r.OpenFile(name)
				if err != nil {
					werr = err
					return false
				}
				h := sha256.New()
				if _, err := io.Copy(h, io.NewSectionReader(sr, 0, c.Size)); err != nil {
					werr = fmt.Errorf("%s: %w", name, err)
					return false
				}
				lines = append(lines, fmt.Sprintf("%s sha256:%x", name, h.Sum(nil)))
			}
			return werr == nil
		})
		return werr
	}
	if err := walk("", root); err != nil {
		return err
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	return nil
}

// open gives the file (to close) and all of it as a SectionReader.
func open(path string) (*os.File, *io.SectionReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, io.NewSectionReader(f, 0, st.Size()), nil
}
