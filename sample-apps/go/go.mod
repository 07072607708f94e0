module procgate.local/samples

go 1.19
