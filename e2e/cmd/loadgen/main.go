// Command loadgen sends a fixed-concurrency, keep-alive POST load to one URL
// for a fixed time and prints throughput and latency percentiles (package
// e2e/loadgen). For ad-hoc runs against a Traefik started by hand:
//
//	cd e2e && go run ./cmd/loadgen -url http://127.0.0.1:8000/faceid/queryfacerecord -c 16 -d 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/kycgate/faceidsigner/e2e/loadgen"
)

func main() {
	url := flag.String("url", "", "URL to POST to (required)")
	body := flag.String("body", `{"orderNo":"orderNo596551"}`, "request body")
	conc := flag.Int("c", 16, "concurrent workers, one keep-alive connection each")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "unmeasured load before measuring")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, loadgen.Options{
		URL: *url, Body: []byte(*body), Concurrency: *conc, Warmup: *warmup, Duration: *dur,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res)
	if res.Failures > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d requests failed; first: %s\n", res.Failures, res.FirstFailure)
		os.Exit(1)
	}
}
