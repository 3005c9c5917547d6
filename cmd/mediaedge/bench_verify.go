package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/config"
)

// newBenchVerifyCmd is `mediaedge bench verify`.
func newBenchVerifyCmd() *cobra.Command {
	var (
		out                                  benchOutput
		internalPcap, cloudPcap, suite       string
		intIn, intOut, cloudOut, cloudIn     []string
		intInF, intOutF, cloudOutF, cloudInF []string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove a gateway's re-keying from an internal-side and a cloud-side capture",
		Long: `Read a capture taken on the gateway's internal side and one taken on its
cloud side, decrypt each with its leg's keys, and check: no plaintext RTP and
no packet authenticating with the other leg's keys on either side, every
payload identical after decryption, ROC and sequence continuity across
re-keys (give a leg's keys in the order they were used), and the latency the
gateway added per packet. Exits 2 when anything is wrong.

Keys are a=crypto lines or base64 key||salt of --suite, given directly or
in files (one per line, for keys that must not appear in the process list):
  --internal-in   K_int: the internal peer's key towards the gateway
  --internal-out  G_int: the gateway's key towards the internal peer
  --cloud-out     G_cloud: the gateway's key towards the cloud
  --cloud-in      K_cloud: the cloud peer's key towards the gateway`,
		Example: `  mediaedge bench verify --internal-pcap int.pcap --cloud-pcap cloud.pcap \
    --internal-in-file kint --internal-out-file gint --cloud-out-file gcloud --cloud-in-file kcloud`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys srtpcheck.VerifyKeys
			for _, k := range []struct {
				dst         *[]srtpcheck.Key
				vals, files []string
				name        string
			}{
				{&keys.InternalIn, intIn, intInF, "internal-in"}, {&keys.InternalOut, intOut, intOutF, "internal-out"},
				{&keys.CloudOut, cloudOut, cloudOutF, "cloud-out"}, {&keys.CloudIn, cloudIn, cloudInF, "cloud-in"},
			} {
				vals := append([]string(nil), k.vals...)
				for _, f := range k.files {
					b, err := config.ReadSecretFile(f)
					if err != nil {
						return err
					}
					for _, ln := range strings.Split(string(b), "\n") {
						if ln = strings.TrimSpace(ln); ln != "" {
							vals = append(vals, ln)
						}
					}
				}
				for i, v := range vals {
					key, err := parseBenchKey(v, suite)
					if err != nil {
						return fmt.Errorf("--%s key %d: %w", k.name, i+1, err)
					}
					*k.dst = append(*k.dst, key)
				}
			}
			idgs, _, err := capture.ReadCaptureFile(internalPcap)
			if err != nil {
				return fmt.Errorf("--internal-pcap: %w", err)
			}
			cdgs, _, err := capture.ReadCaptureFile(cloudPcap)
			if err != nil {
				return fmt.Errorf("--cloud-pcap: %w", err)
			}
			res, err := srtpcheck.Verify(idgs, cdgs, keys)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json {
				if err := benchWriteJSON(w, res); err != nil {
					return err
				}
			} else {
				for _, v := range res.Violations {
					fmt.Fprintln(w, v)
				}
				for _, rk := range res.ReKeys {
					fmt.Fprintln(w, "re-key:", rk)
				}
				if err := res.Report.WriteTable(w); err != nil {
					return err
				}
				fmt.Fprintf(w, "%d violations\n", len(res.Violations))
			}
			if out.plot != "" {
				o := benchOutput{plot: out.plot}
				if err := o.write(io.Discard, res.Report); err != nil {
					return err
				}
			}
			return benchResultError(res.OK(), "bench verify: re-keying violations found")
		},
	}
	out.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&internalPcap, "internal-pcap", "", "capture taken on the gateway's internal side (required)")
	f.StringVar(&cloudPcap, "cloud-pcap", "", "capture taken on the gateway's cloud side (required)")
	f.StringVar(&suite, "suite", "AES_CM_128_HMAC_SHA1_80", "suite of keys given as bare base64")
	f.StringArrayVar(&intIn, "internal-in", nil, "K_int (repeat for each key epoch, in order)")
	f.StringArrayVar(&intOut, "internal-out", nil, "G_int (repeatable)")
	f.StringArrayVar(&cloudOut, "cloud-out", nil, "G_cloud (repeatable)")
	f.StringArrayVar(&cloudIn, "cloud-in", nil, "K_cloud (repeatable)")
	f.StringArrayVar(&intInF, "internal-in-file", nil, "file with K_int keys, one per line")
	f.StringArrayVar(&intOutF, "internal-out-file", nil, "file with G_int keys")
	f.StringArrayVar(&cloudOutF, "cloud-out-file", nil, "file with G_cloud keys")
	f.StringArrayVar(&cloudInF, "cloud-in-file", nil, "file with K_cloud keys")
	_ = cmd.MarkFlagRequired("internal-pcap")
	_ = cmd.MarkFlagRequired("cloud-pcap")
	return cmd
}
