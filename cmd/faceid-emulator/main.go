// Command faceid-emulator serves the faceidtest FaceID emulator on a fixed
// address, for demos and manual testing against a real Traefik:
//
//	faceid-emulator -listen 127.0.0.1:9000 -app IDAXXXXX -secret S -order orderNo596551 -photo-bytes 2000000
//
// It registers one app and a successful result for each order, prints one
// line saying where it listens, and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "faceid-emulator:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage error")

// run serves the emulator until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("faceid-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on (host:port; port 0 picks a free one)")
	appID := fs.String("app", "IDAXXXXX", "app id (WBappid) to register")
	secret := fs.String("secret", "", "the app's secret (required)")
	orders := fs.String("order", "", "comma-separated order numbers that have a result")
	code := fs.String("code", "0", "result code of every order")
	photoBytes := fs.Int("photo-bytes", 1024, "size of each order's photo (a fake JPEG); 0 for none")
	videoBytes := fs.Int("video-bytes", 4096, "size of each order's video (a fake MP4); 0 for none")
	mediaAfter := fs.Duration("media-after", 0, "how long after start the photo and video appear")
	overlap := fs.Duration("overlap", faceidtest.DefaultOverlap, "how long a superseded token and its tickets stay valid")
	tokenLife := fs.Duration("token-lifetime", faceidtest.DefaultTokenLifetime, "access token lifetime (expire_in)")
	ticketLife := fs.Duration("ticket-lifetime", faceidtest.DefaultTicketLifetime, "SIGN ticket lifetime (expire_in)")
	expireNumber := fs.Bool("expire-in-number", false, "answer expire_in as a JSON number instead of a string")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "faceid-emulator: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	if *secret == "" || *appID == "" {
		fmt.Fprintln(stderr, "faceid-emulator: -app and -secret are required")
		return errUsage
	}
	if *photoBytes < 0 || *videoBytes < 0 {
		fmt.Fprintln(stderr, "faceid-emulator: -photo-bytes and -video-bytes must not be negative")
		return errUsage
	}

	s := faceidtest.NewUnstartedServer()
	defer s.Close()
	s.AddApp(*appID, *secret)
	s.SetOverlap(*overlap)
	s.SetLifetimes(*tokenLife, *ticketLife)
	s.SetExpireInAsNumber(*expireNumber)
	photo := fakeFile([]byte{0xFF, 0xD8, 0xFF, 0xE0}, []byte{0xFF, 0xD9}, *photoBytes)
	video := fakeFile([]byte("\x00\x00\x00\x18ftypmp42"), nil, *videoBytes)
	var registered []string
	for _, order := range strings.Split(*orders, ",") {
		order = strings.TrimSpace(order)
		if order == "" {
			continue
		}
		s.AddResult(*appID, order, faceidtest.Result{Code: *code, Photo: photo, Video: video, MediaAfter: *mediaAfter})
		registered = append(registered, order)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (is another emulator running?): %w", *listen, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "faceid-emulator listening on http://%s (app %s, orders %s)\n",
		ln.Addr(), *appID, strings.Join(registered, ","))

	select {
	case err := <-served:
		return fmt.Errorf("serving on %s stopped: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.Close() // ends pending fault delays
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// fakeFile returns n bytes that start with header and end with trailer
// (when they fit), filled with a fixed pattern; nil for n == 0.
func fakeFile(header, trailer []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131 + i>>8)
	}
	if len(header)+len(trailer) <= n {
		copy(b, header)
		copy(b[n-len(trailer):], trailer)
	}
	return b
}
