package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clawhold/clawhold/frontdoor"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/instance"
)

// Reasons the CLI records when it ends sessions.
const (
	reasonRoleChanged     = "role changed"
	reasonMFAReset        = "mfa reset"
	reasonPasswordChanged = "password changed"
	reasonOperatorRevoke  = "revoked by operator"
)

// frontdoorState is what the users and sessions commands work on: the
// system database's accounts and sessions.
type frontdoorState struct {
	in       *instance.Instance
	sessions *session.Manager
	accounts *account.Service // nil unless asked for
}

// openFrontdoor opens the installation, the session manager over the
// system database and, with accounts, the account service (which needs the
// system keyring). The caller closes st.in.
func (a *app) openFrontdoor(ctx context.Context, accounts bool) (*frontdoorState, error) {
	in, err := a.open(ctx, false)
	if err != nil {
		return nil, err
	}
	st, err := frontdoorFor(ctx, in, accounts)
	if err != nil {
		in.Close()
		return nil, err
	}
	return st, nil
}

func frontdoorFor(ctx context.Context, in *instance.Instance, accounts bool) (*frontdoorState, error) {
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		return nil, err
	}
	st := &frontdoorState{in: in, sessions: frontdoor.Sessions(in.Config.Frontdoor, sys, nil, actor(), in.Logger)}
	if accounts {
		if err := st.openAccounts(ctx); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *frontdoorState) openAccounts(ctx context.Context) error {
	if st.accounts != nil {
		return nil
	}
	kr, err := st.in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		return err
	}
	st.accounts, err = frontdoor.Accounts(ctx, st.in.Config.Frontdoor, st.sessions.DB, kr)
	return err
}

func cliMeta() account.Meta { return account.Meta{Actor: actor()} }

// readPassword reads a new password for user: from a terminal without
// echo, asked twice, or else from stdin (one trailing newline removed).
// Passwords never come from argv: argv is visible to every user through
// /proc and ps. The caller clears the result.
func (a *app) readPassword(user string) ([]byte, error) {
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.stderr, "password for %s (input hidden, at least %d characters): ", user, account.MinPasswordLen)
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(a.stderr, "the same password again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		defer clear(p2)
		if err != nil {
			clear(p1)
			return nil, err
		}
		if subtle.ConstantTimeCompare(p1, p2) != 1 {
			clear(p1)
			return nil, errors.New("the two passwords differ; nothing was changed")
		}
		if len(p1) == 0 {
			return nil, errors.New("no password given; nothing was changed")
		}
		return p1, nil
	}
	// One fixed buffer, so no partial copies of the password are left
	// behind by a growing slice. Anything longer than the maximum is
	// refused by the account package's policy.
	buf := make([]byte, account.MaxPasswordLen+3)
	n, err := io.ReadFull(a.stdin, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		clear(buf)
		return nil, err
	}
	v := buf[:n]
	if len(v) > 0 && v[len(v)-1] == '\n' {
		v = v[:len(v)-1]
		if len(v) > 0 && v[len(v)-1] == '\r' {
			v = v[:len(v)-1]
		}
	}
	if len(v) == 0 {
		clear(buf)
		return nil, errors.New("no password on stdin: pipe it in (e.g. from a password manager), or run on a terminal to be prompted; it is never taken from the command line")
	}
	return v, nil
}

func (a *app) usersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage the front door's local users: add, list, disable, roles, passwords, MFA, first-admin link",
		Long: `Users sign in at the front door with a password and a TOTP second factor.
Every change is recorded as an event in the system database; disabling a user,
resetting their MFA, changing their role or password also ends their sessions.
Passwords are read from stdin or a hidden prompt, never from the command line.`,
	}
	cmd.AddCommand(a.usersAddCmd(), a.usersListCmd(), a.usersDisableCmd(), a.usersEnableCmd(),
		a.usersResetMFACmd(), a.usersSetRoleCmd(), a.usersSetPasswordCmd(), a.usersSetupLinkCmd())
	return cmd
}

func (a *app) usersAddCmd() *cobra.Command {
	var tenant, role string
	cmd := &cobra.Command{
		Use:   "add NAME --tenant TENANT",
		Short: "Create a user; the password comes from stdin (hidden prompt, asked twice, on a terminal)",
		Long: `add creates a local user of an existing tenant. The password is read from
stdin, or from a hidden prompt asked twice on a terminal, never from the
command line. It must be at least 12 characters, not contain the user name
and not be a common password. The user enrols TOTP at their first sign-in.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := account.ValidName(name); err != nil {
				return err
			}
			r, err := account.ParseRole(role)
			if err != nil {
				return err
			}
			if tenant == "" {
				return errors.New("--tenant is required: the tenant the user belongs to (an existing one, e.g. default)")
			}
			ctx := cmd.Context()
			st, err := a.openFrontdoor(ctx, true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			// A user is access to a tenant: a typo must not create one.
			if err := st.in.CheckTenant(ctx, tenant); err != nil {
				return err
			}
			if _, err := st.accounts.Get(ctx, name); err == nil {
				return fmt.Errorf("user %s: %w", name, account.ErrExists)
			} else if !errors.Is(err, account.ErrNotFound) {
				return err
			}
			pw, err := a.readPassword(name)
			if err != nil {
				return fmt.Errorf("reading the password: %w", err)
			}
			defer clear(pw)
			u, err := st.accounts.Create(ctx, cliMeta(), account.NewUser{Name: name, Tenant: tenant, Role: r, Password: pw})
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, u)
			}
			fmt.Fprintf(a.stdout, "%s: created (tenant %s, role %s); TOTP is set up at the first sign-in\n", u.Name, u.Tenant, u.Role)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant the user belongs to (must exist)")
	cmd.Flags().StringVar(&role, "role", string(account.RoleViewer), "viewer, operator or admin")
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) usersListCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users: tenant, role, disabled, MFA and recovery codes left (never hashes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := a.openFrontdoor(ctx, true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			if tenant != "" {
				if err := st.in.CheckTenant(ctx, tenant); err != nil {
					return err
				}
			}
			list, err := st.accounts.List(ctx, account.ListOptions{Tenant: tenant})
			if err != nil {
				return err
			}
			if a.json {
				if list == nil {
					list = []account.User{}
				}
				return writeJSON(a.stdout, list)
			}
			now := time.Now()
			rows := make([][]string, 0, len(list))
			for _, u := range list {
				rows = append(rows, []string{u.Name, u.Tenant, string(u.Role), yesNo(u.Disabled), onOff(u.TOTP),
					strconv.Itoa(u.Recovery), age(u.CreatedAt, now)})
			}
			return table(a.stdout, []string{"NAME", "TENANT", "ROLE", "DISABLED", "MFA", "RECOVERY CODES", "CREATED"}, rows)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's users (default all)")
	return cmd
}

// userChange runs change on user name and then ends the user's sessions
// with reason, so that what changed applies from the next sign-in.
func (a *app) userChange(cmd *cobra.Command, name, reason, done string, change func(ctx context.Context, st *frontdoorState) error) error {
	ctx := cmd.Context()
	st, err := a.openFrontdoor(ctx, true)
	if err != nil {
		return err
	}
	defer st.in.Close()
	if err := change(ctx, st); err != nil {
		return err
	}
	n, err := st.sessions.RevokeUser(ctx, name, reason)
	if err != nil {
		return fmt.Errorf("%s: %s, but ending the user's sessions failed (run `clawhold sessions revoke --user %s`): %w", name, done, name, err)
	}
	u, err := st.accounts.Get(ctx, name)
	if err != nil {
		return err
	}
	if a.json {
		return writeJSON(a.stdout, struct {
			User            *account.User `json:"user"`
			SessionsRevoked int           `json:"sessions_revoked"`
		}{u, n})
	}
	fmt.Fprintf(a.stdout, "%s: %s; %d session(s) ended\n", name, done, n)
	return nil
}

func (a *app) usersDisableCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Stop a user from signing in and end all their sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.userChange(cmd, args[0], session.ReasonUserDisable, "disabled", func(ctx context.Context, st *frontdoorState) error {
				return st.accounts.Disable(ctx, cliMeta(), args[0])
			})
		},
	}
}

func (a *app) usersEnableCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "enable NAME",
		Short: "Let a disabled user sign in again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := a.openFrontdoor(ctx, true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			if err := st.accounts.Enable(ctx, cliMeta(), args[0]); err != nil {
				return err
			}
			u, err := st.accounts.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, struct {
					User *account.User `json:"user"`
				}{u})
			}
			fmt.Fprintf(a.stdout, "%s: enabled\n", u.Name)
			return nil
		},
	}
}

func (a *app) usersResetMFACmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reset-mfa NAME",
		Short: "Delete a user's TOTP secret and recovery codes (they enrol again at the next sign-in) and end their sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.userChange(cmd, args[0], reasonMFAReset, "MFA reset (TOTP is set up again at the next sign-in)", func(ctx context.Context, st *frontdoorState) error {
				return st.accounts.ResetMFA(ctx, cliMeta(), args[0])
			})
		},
	}
}

func (a *app) usersSetRoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-role NAME ROLE",
		Short: "Change a user's role (viewer, operator, admin) and end their sessions so it applies at the next sign-in",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := account.ParseRole(args[1])
			if err != nil {
				return err
			}
			return a.userChange(cmd, args[0], reasonRoleChanged, "role is now "+string(r), func(ctx context.Context, st *frontdoorState) error {
				return st.accounts.SetRole(ctx, cliMeta(), args[0], r)
			})
		},
	}
}

func (a *app) usersSetPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-password NAME",
		Short: "Replace a user's password (from stdin, or a hidden prompt asked twice) and end their sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return a.userChange(cmd, name, reasonPasswordChanged, "password changed", func(ctx context.Context, st *frontdoorState) error {
				// Ask for a password only for a user that exists.
				if _, err := st.accounts.Get(ctx, name); err != nil {
					return err
				}
				pw, err := a.readPassword(name)
				if err != nil {
					return fmt.Errorf("reading the password: %w", err)
				}
				defer clear(pw)
				return st.accounts.SetPassword(ctx, cliMeta(), name, pw)
			})
		},
	}
}

func (a *app) usersSetupLinkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "setup-link",
		Short: "Print a one-time link (valid 1h) that creates the first admin; refused once an admin exists",
		Long: `setup-link prints <frontdoor.public_url>/.clawhold/setup?token=... on stdout.
Whoever opens it first, within an hour, chooses the first admin's name and
password (in the tenant the front door's setup uses, "default" unless
configured otherwise). It is the only time the token is shown; only its hash
is stored. Once an admin exists it is refused: add further users with
clawhold users add.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := a.openFrontdoor(ctx, true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			tok, expires, err := st.accounts.CreateSetupToken(ctx, cliMeta())
			if errors.Is(err, account.ErrAdminExists) {
				return errors.New("an admin already exists, so no setup link is issued: an admin signs in and others are added with `clawhold users add NAME --tenant T --role ROLE`")
			}
			if err != nil {
				return err
			}
			link := strings.TrimSuffix(st.in.Config.Frontdoor.PublicURL, "/") + "/.clawhold/setup?token=" + url.QueryEscape(tok)
			if a.json {
				return writeJSON(a.stdout, map[string]any{"url": link, "expires": expires.UTC()})
			}
			fmt.Fprintf(a.stderr, "one-time link for the first admin, valid until %s; it is not shown again:\n", expires.Local().Format("2006-01-02 15:04 MST"))
			fmt.Fprintln(a.stdout, link)
			return nil
		},
	}
}
