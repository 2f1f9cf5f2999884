package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/session"
)

func (a *app) sessionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List and end the front door's sign-in sessions",
		Long: `Sessions live in the system database. A revoked session's WebSockets are
closed by the running front door within a second. Tokens are never shown:
a session is named by its id (the SHA-256 of its token).`,
	}
	cmd.AddCommand(a.sessionsListCmd(), a.sessionsRevokeCmd())
	return cmd
}

func sessionTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func sessionState(s *session.Session, now time.Time) string {
	switch {
	case !s.Revoked.IsZero():
		return "revoked (" + s.RevokeReason + ")"
	case !s.Active(now):
		return "expired"
	}
	return "live"
}

func (a *app) sessionsListCmd() *cobra.Command {
	var user string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List live sessions: id, user, tenant, role, times, client address (never tokens)",
		Long: `list shows live sessions, newest first. EXPIRES is when the session ends if it
is not used again: the earlier of its idle and absolute deadlines. --all adds
sessions that ended (revoked or expired) and are not yet swept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := a.openFrontdoor(ctx, false)
			if err != nil {
				return err
			}
			defer st.in.Close()
			list, err := st.sessions.List(ctx, session.ListOptions{User: user, Ended: all})
			if err != nil {
				return err
			}
			if a.json {
				if list == nil {
					list = []session.Session{}
				}
				return writeJSON(a.stdout, list)
			}
			now := time.Now()
			header := []string{"ID", "USER", "TENANT", "ROLE", "CREATED", "LAST SEEN", "EXPIRES", "IP"}
			if all {
				header = append(header, "STATE")
			}
			rows := make([][]string, 0, len(list))
			for i := range list {
				s := &list[i]
				row := []string{s.ID, s.User, s.Tenant, s.Role, sessionTime(s.Created), sessionTime(s.LastSeen), sessionTime(s.End()), s.IP}
				if all {
					row = append(row, sessionState(s, now))
				}
				rows = append(rows, row)
			}
			return table(a.stdout, header, rows)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user's sessions")
	cmd.Flags().BoolVar(&all, "all", false, "include sessions that ended (revoked or expired) and are not yet swept")
	return cmd
}

func (a *app) sessionsRevokeCmd() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "revoke ID | --user NAME",
		Short: "End one session by id, or every session of a user",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (user != "") {
				return errors.New("name one session by ID (as `clawhold sessions list` shows it), or a user with --user NAME")
			}
			ctx := cmd.Context()
			if len(args) == 1 {
				id := args[0]
				if !session.ValidID(id) {
					return fmt.Errorf("%q is not a session id: want the 64 hex digits `clawhold sessions list` shows", id)
				}
				st, err := a.openFrontdoor(ctx, false)
				if err != nil {
					return err
				}
				defer st.in.Close()
				if err := st.sessions.Revoke(ctx, id, reasonOperatorRevoke); err != nil {
					if errors.Is(err, session.ErrNoSession) {
						return fmt.Errorf("session %s: %w", id, err)
					}
					return err
				}
				if a.json {
					return writeJSON(a.stdout, map[string]any{"revoked": []string{id}})
				}
				fmt.Fprintf(a.stdout, "session %s: ended\n", id)
				return nil
			}
			st, err := a.openFrontdoor(ctx, false)
			if err != nil {
				return err
			}
			defer st.in.Close()
			n, err := st.sessions.RevokeUser(ctx, user, reasonOperatorRevoke)
			if err != nil {
				return err
			}
			if n == 0 {
				// Single sign-on users have sessions but no local account,
				// so only a name with neither is an error (likely a typo).
				if err := st.openAccounts(ctx); err != nil {
					return err
				}
				if _, err := st.accounts.Get(ctx, user); errors.Is(err, account.ErrNotFound) {
					return fmt.Errorf("user %q: no such user and no live sessions", user)
				} else if err != nil {
					return err
				}
			}
			if a.json {
				return writeJSON(a.stdout, map[string]any{"user": user, "sessions_revoked": n})
			}
			fmt.Fprintf(a.stdout, "%s: %d session(s) ended\n", user, n)
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "end every session of this user")
	return cmd
}
