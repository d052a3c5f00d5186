package main

import (
	"github.com/spf13/pflag"

	"github.com/palisade-dev/palisade/internal/server"
)

// addScanFlags registers the scanner's server flags.
func addScanFlags(f *pflag.FlagSet, cfg *server.Config) {
	f.StringSliceVar(&cfg.ScanRegistries, "scan-registries", nil,
		"registries (`REGISTRIES`) the scanner may pull images from: host, host:port or CIDR, comma-separated or repeated "+
			"(default none: images are inventoried, not pulled; loopback, private and link-local addresses need an explicit entry)")
	f.StringVar(&cfg.VulnImportDir, "vulndb-import-dir", "",
		"directory (`DIR`) POST /api/v1/vulndb/import may read OSV data from (default: API imports disabled; palisade vulndb import works locally)")
	f.Var((*byteSize)(&cfg.ScanCacheMaxBytes), "scan-cache-max-bytes",
		"cap on the scanner's layer cache, e.g. 500MiB (default: 2GiB, or a quarter of the data disk's free space if less; least recently used layers go first)")
}
