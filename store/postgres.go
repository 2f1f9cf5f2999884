package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresOptions configures OpenPostgres.
type PostgresOptions struct {
	// Password, if set, overrides any password in the DSN. Keeping it out
	// of the DSN keeps it out of anything that prints the DSN.
	Password string
	// MaxConns caps each pool (one per tenant, one for the system).
	// Default 4.
	MaxConns int
	// SchemaPrefix starts every schema name. Default "clawhold_"; tests use
	// a unique one. Lowercase letters, digits and '_', not starting with a
	// digit.
	SchemaPrefix string
}

const (
	defaultMaxConns     = 4
	defaultSchemaPrefix = "clawhold_"
	// maxIdentifier is PostgreSQL's identifier length limit (NAMEDATALEN-1).
	// Longer names are silently truncated by the server, which could make
	// two tenants share a schema, so they are refused instead.
	maxIdentifier = 63
	// pgIdleTime bounds how long an idle connection is kept, so the pools of
	// rarely used tenants give their connections back to the server.
	pgIdleTime = 5 * time.Minute
)

// PostgresStore keeps each database in its own schema of one PostgreSQL
// database: <prefix>system and <prefix>t_<name> ('-' mapped to '_').
//
// Every schema has its own connection pool whose search_path is set at
// connection startup, so a pooled connection never carries another
// tenant's search_path. Before a connection is reused its search_path is
// checked; one that drifted (a stray SET search_path) is discarded.
type PostgresStore struct {
	config *pgx.ConnConfig // parsed DSN with password; copied per pool
	opts   PostgresOptions
	// admin creates, finds and drops schemas. Its search_path is
	// pg_catalog alone, so it can never resolve a name in a tenant schema.
	admin *sql.DB

	mu      sync.Mutex // guards the fields below, and serializes opening and deleting
	closed  bool
	system  *DB
	tenants map[string]*DB
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a libpq
// keyword/value string or URL). Schemas are created on first use.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*PostgresStore, error) {
	if opts.MaxConns == 0 {
		opts.MaxConns = defaultMaxConns
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("opening postgres store: MaxConns %d is negative", opts.MaxConns)
	}
	if opts.SchemaPrefix == "" {
		opts.SchemaPrefix = defaultSchemaPrefix
	}
	if err := validSchemaPrefix(opts.SchemaPrefix); err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}

	config, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts passwords from parse errors only on a best-effort
		// basis, and the cause may quote the DSN: say nothing about it.
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			return nil, errors.New("opening postgres store: cannot parse DSN (details withheld: it may contain a password)")
		}
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	if opts.Password != "" {
		config.Password = opts.Password
	}

	s := &PostgresStore{
		config:  config,
		opts:    opts,
		tenants: make(map[string]*DB),
	}
	adminConfig := config.Copy()
	adminConfig.RuntimeParams["search_path"] = "pg_catalog"
	s.admin = stdlib.OpenDB(*adminConfig)
	s.admin.SetMaxOpenConns(opts.MaxConns)
	s.admin.SetConnMaxIdleTime(pgIdleTime)
	if err := s.admin.PingContext(ctx); err != nil {
		s.admin.Close()
		return nil, fmt.Errorf("opening postgres store: connecting to %s as %s: %w", config.Host, config.User, err)
	}
	return s, nil
}

// System returns the system database, schema <prefix>system.
func (s *PostgresStore) System(ctx context.Context) (*DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.system != nil {
		return s.system, nil
	}
	db, err := s.openSchema(ctx, s.systemSchema(), "system", kindSystem)
	if err != nil {
		return nil, err
	}
	s.system = db
	return db, nil
}

// Tenant returns the tenant's database, schema <prefix>t_<name>, creating
// it if needed.
func (s *PostgresStore) Tenant(ctx context.Context, name string) (*DB, error) {
	schema, err := s.tenantSchema(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if db := s.tenants[name]; db != nil {
		return db, nil
	}
	db, err := s.openSchema(ctx, schema, name, kindTenant)
	if err != nil {
		return nil, err
	}
	s.tenants[name] = db
	return db, nil
}

// TenantExists reports whether the tenant's schema exists.
func (s *PostgresStore) TenantExists(ctx context.Context, name string) (bool, error) {
	schema, err := s.tenantSchema(name)
	if err != nil {
		return false, err
	}
	var ok bool
	err = s.admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking tenant %q: %w", name, err)
	}
	return ok, nil
}

// DeleteTenant closes the tenant's pool and drops its schema with
// everything in it. A *DB for the tenant obtained earlier fails from then on.
func (s *PostgresStore) DeleteTenant(ctx context.Context, name string) error {
	schema, err := s.tenantSchema(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if db := s.tenants[name]; db != nil {
		delete(s.tenants, name)
		if err := db.close(); err != nil {
			return fmt.Errorf("deleting tenant %q: %w", name, err)
		}
	}
	if err := s.schemaDDL(ctx, schema, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("deleting tenant %q: %w", name, err)
	}
	return nil
}

// Close closes every pool. The store is unusable afterwards.
func (s *PostgresStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	errs := closeDBs(&s.system, s.tenants)
	errs = append(errs, s.admin.Close())
	return errors.Join(errs...)
}

func (s *PostgresStore) systemSchema() string {
	return s.opts.SchemaPrefix + "system"
}

// tenantSchema returns the schema of tenant name, refusing invalid names and
// names too long for a PostgreSQL identifier after the prefix.
func (s *PostgresStore) tenantSchema(name string) (string, error) {
	if err := ValidTenantName(name); err != nil {
		return "", err
	}
	schema := s.opts.SchemaPrefix + "t_" + strings.ReplaceAll(name, "-", "_")
	if len(schema) > maxIdentifier {
		return "", fmt.Errorf("invalid tenant name %q: with schema prefix %q it makes a %d-byte schema name; PostgreSQL allows %d (so at most %d characters)",
			name, s.opts.SchemaPrefix, len(schema), maxIdentifier, maxIdentifier-len(s.opts.SchemaPrefix)-len("t_"))
	}
	return schema, nil
}

// openSchema creates schema if needed, opens its pool and migrates it.
func (s *PostgresStore) openSchema(ctx context.Context, schema, name string, kind dbKind) (*DB, error) {
	if err := s.schemaDDL(ctx, schema, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("opening %s database: %w", name, err)
	}
	pool := s.openPool(schema)
	db := &DB{name: name, dialect: Postgres, rw: pool, ro: pool}
	if err := migrate(ctx, db, kind, schema); err != nil {
		db.close()
		return nil, err
	}
	return db, nil
}

// schemaDDL runs a CREATE or DROP of schema under an advisory lock, since
// concurrent CREATE SCHEMA IF NOT EXISTS of one name can still fail with a
// unique violation.
func (s *PostgresStore) schemaDDL(ctx context.Context, schema, ddl string) error {
	tx, err := s.admin.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "clawhold-schema:"+schema); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return err
	}
	return tx.Commit()
}

// openPool returns a pool whose connections all have search_path fixed to
// schema. The tenant is a property of the pool, not of a borrowed
// connection, so no code path can hand one tenant's connection to another.
func (s *PostgresStore) openPool(schema string) *sql.DB {
	config := s.config.Copy() // own RuntimeParams map
	want := pgx.Identifier{schema}.Sanitize()
	// Set at connection startup: in force before the first query, with no
	// window in which the connection has the server's default search_path.
	config.RuntimeParams["search_path"] = want
	pool := stdlib.OpenDB(*config, stdlib.OptionResetSession(func(ctx context.Context, conn *pgx.Conn) error {
		return checkSearchPath(ctx, conn, schema, want)
	}))
	pool.SetMaxOpenConns(s.opts.MaxConns)
	pool.SetMaxIdleConns(s.opts.MaxConns)
	pool.SetConnMaxIdleTime(pgIdleTime)
	return pool
}

// checkSearchPath runs before a pooled connection is reused. If anything
// changed the connection's search_path (a SET search_path, or set_config,
// that outlived its transaction), it returns driver.ErrBadConn so that
// database/sql discards the connection and hands out a fresh one: the next
// borrower never sees another schema's tables.
func checkSearchPath(ctx context.Context, conn *pgx.Conn, schema, want string) error {
	var setting string
	var schemas []string
	err := conn.QueryRow(ctx, `SELECT current_setting('search_path'), current_schemas(false)`).Scan(&setting, &schemas)
	if err != nil {
		return driver.ErrBadConn
	}
	if setting != want || len(schemas) != 1 || schemas[0] != schema {
		slog.Warn("store: discarding postgres connection whose search_path changed",
			"schema", schema, "search_path", setting, "pid", conn.PgConn().PID())
		return driver.ErrBadConn
	}
	return nil
}

// validSchemaPrefix keeps prefixes to plain lowercase identifiers, so schema
// names need no case folding and leave room for the tenant name.
func validSchemaPrefix(p string) error {
	ok := len(p) > 0 && !(p[0] >= '0' && p[0] <= '9')
	for i := 0; ok && i < len(p); i++ {
		c := p[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	if !ok {
		return fmt.Errorf("invalid schema prefix %q: must be lowercase letters, digits and '_', not starting with a digit", p)
	}
	if len(p)+len("t_")+1 > maxIdentifier {
		return fmt.Errorf("invalid schema prefix %q: too long to leave room for tenant names in a %d-byte PostgreSQL identifier", p, maxIdentifier)
	}
	return nil
}
