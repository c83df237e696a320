// Command bundle writes meshplane's OLM bundle (bundle/ and bundle.Dockerfile) from the
// kustomize sources under config/. Run it with 'make bundle' (IMG, VERSION, CHANNELS and
// DEFAULT_CHANNEL are its flags).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshplane/meshplane/internal/bundle"
)

func main() {
	opts := bundle.Options{}
	var channels string
	flag.StringVar(&opts.Root, "root", ".", "repository root")
	flag.StringVar(&opts.Image, "image", "", "operator image the CSV deploys")
	flag.StringVar(&opts.Version, "version", "", "operator version (semantic version)")
	flag.StringVar(&channels, "channels", "", "comma-separated channels the bundle is published in")
	flag.StringVar(&opts.DefaultChannel, "default-channel", "", "the package's default channel")
	flag.Parse()
	if channels != "" {
		opts.Channels = strings.Split(channels, ",")
	}

	files, err := bundle.Generate(opts)
	if err == nil {
		err = bundle.Write(opts.Root, files)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
	fmt.Printf("bundle: wrote %d files (%s %s, image %s)\n", len(files), bundle.OutputDir, opts.Version, opts.Image)
}
