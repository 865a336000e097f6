module github.com/kycgate/badsignature

go 1.24
