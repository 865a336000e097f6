// Command democlient is the small part of curl that scripts/demo.sh needs,
// for machines without curl:
//
//	democlient [-d DATA] [-o FILE] [-w] [-f] URL
//
// It GETs URL, or POSTs DATA as application/json with -d, and writes the
// answer's body to standard output or FILE (-o). With -w it then prints the
// HTTP status code (like curl -w '%{http_code}'); with -f an HTTP status of
// 400 or more exits 22 (like curl -f). Network errors exit 7.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("democlient", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("d", "", "POST this body (application/json)")
	out := fs.String("o", "", "write the body to this file instead of standard output")
	writeStatus := fs.Bool("w", false, "print the HTTP status code after the body")
	failHTTP := fs.Bool("f", false, "exit 22 on an HTTP status of 400 or more")
	timeout := fs.Duration("m", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: democlient [-d DATA] [-o FILE] [-w] [-f] URL")
		return 2
	}
	url := fs.Arg(0)
	method, body := http.MethodGet, io.Reader(nil)
	if *data != "" {
		method, body = http.MethodPost, strings.NewReader(*data)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		fmt.Fprintln(stderr, "democlient:", err)
		return 2
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "democlient:", err)
		return 7
	}
	defer resp.Body.Close()
	if *failHTTP && resp.StatusCode >= 400 {
		fmt.Fprintf(stderr, "democlient: %s: HTTP %d\n", url, resp.StatusCode)
		return 22
	}
	dst := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(stderr, "democlient:", err)
			return 23
		}
		defer f.Close()
		dst = f
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		fmt.Fprintln(stderr, "democlient: reading the answer:", err)
		return 56
	}
	if *writeStatus {
		fmt.Fprintf(stdout, "%d", resp.StatusCode)
	}
	return 0
}
