package main

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/relay"
)

func newTurnKillCmd(g *globals) *cobra.Command {
	var (
		user string
		ids  []uint
	)
	cmd := &cobra.Command{
		Use:   "kill --allocation ID... | --user NAME",
		Short: "End allocations of the running relay, by id or all of a user's",
		Long: `End allocations the way an expiry does: the relay socket closes at once,
a later Refresh of the client goes unanswered, and the accounting line
says reason=killed. --user matches the TURN username, or for REST
credentials ("<expiry>:<name>") the name. The ids are those of
'mediaedge turn allocations'. The client may allocate again: to keep a
user out, remove the credential too.`,
		Example: `  mediaedge turn kill --allocation 17
  mediaedge turn kill --user alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (user == "") == (len(ids) == 0) {
				return errors.New("turn kill: give either --allocation or --user")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			if user != "" {
				var res relay.KillResult
				if err := c.Do(cmd.Context(), "DELETE", "/v1/relay/allocations?user="+url.QueryEscape(user), nil, &res); err != nil {
					return err
				}
				for _, id := range res.Killed {
					fmt.Fprintf(out, "killed allocation %d\n", id)
				}
				return nil
			}
			var errs []error
			for _, id := range ids {
				if err := c.Do(cmd.Context(), "DELETE", "/v1/relay/allocations/"+strconv.FormatUint(uint64(id), 10), nil, nil); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(out, "killed allocation %d\n", id)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "end every allocation of this user")
	cmd.Flags().UintSliceVar(&ids, "allocation", nil, "end the allocation with this id (repeatable)")
	return cmd
}
