module github.com/kycgate/configecho

go 1.24
