module github.com/kycgate/signfloor

go 1.24
