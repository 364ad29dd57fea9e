//! The mutual-credit ledger, as a pure state machine: one account per scope, two-phase
//! transfers (reserve, then post or void), credit limits set by governance, and clearing
//! of obligations between the members of a federation.
//!
//! Every operation is checked in full before anything changes, so an error leaves the
//! ledger as it was; every transfer has an id derived from its cause, so applying the
//! same operation twice changes nothing the second time; and the positions of all
//! accounts sum to zero after every operation (asserted where transfers are applied).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use icn_protocol::ContentId;
use icn_protocol::governance::{Credits, ScopeId};
use serde::{Deserialize, Serialize};

/// The largest amount one operation may move or one limit may be: far from i64's end,
/// so sums of many amounts cannot overflow.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;
/// Payees of one posting (replicas whose results were accepted).
pub const PAYEES_MAX: usize = 16;
/// Settled (posted or voided) transfers remembered, the most recent: a repeat of one of
/// them is `AlreadyDone`. Older ones are forgotten so that memory does not grow with
/// history; a repeat of a forgotten one is refused as unknown, and changes nothing.
pub const SETTLED_REMEMBERED_MAX: usize = 16_384;

/// A transfer's id, derived from what caused it: the same cause always names the same
/// transfer, which is what makes retries harmless.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId(pub ContentId);

impl TransferId {
    pub fn derive(kind: &str, cause: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"icn-transfer\0");
        hasher.update(kind.as_bytes());
        hasher.update(b"\0");
        hasher.update(cause);
        TransferId(ContentId(*hasher.finalize().as_bytes()))
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.short())
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({})", self.0.short())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Posted: what the scope earned minus what it spent.
    pub position: i64,
    /// Held by pending reservations.
    pub reserved: i64,
    /// How far below zero `position - reserved` may go; zero until a decision grants a line.
    pub limit: i64,
}

impl Account {
    /// What the account may still reserve.
    pub fn available(&self) -> i64 {
        self.position - self.reserved + self.limit
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Pending,
    Posted,
    Voided,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub payer: ScopeId,
    pub amount: Credits,
    pub state: State,
}

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The same operation was applied before; nothing changed.
    AlreadyDone,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("scope {0} has no account")]
    UnknownAccount(ScopeId),
    #[error("amount {0} is not allowed: amounts are whole credits from 1 to {AMOUNT_MAX}")]
    BadAmount(i64),
    #[error("credit limit {0} is not allowed: limits are from 0 to {AMOUNT_MAX}")]
    BadLimit(i64),
    #[error("account {account} can take on {available} more credits of obligations; {amount} were asked")]
    OverLimit { account: ScopeId, available: i64, amount: i64 },
    #[error("transfer {0} is not known")]
    UnknownTransfer(TransferId),
    #[error("transfer {id} is {state:?}; it cannot be {wanted}")]
    Conflict { id: TransferId, state: State, wanted: &'static str },
    #[error("transfer {id} was made for {existing}; the same id cannot now mean {asked}")]
    Mismatch { id: TransferId, existing: String, asked: String },
    #[error("posting {posted} credits exceeds the {reserved} reserved by transfer {id}")]
    OverReservation { id: TransferId, reserved: i64, posted: i64 },
    #[error("a posting pays 0 to {PAYEES_MAX} accounts; {0} were named")]
    TooManyPayees(usize),
    #[error(
        "account {account} already uses {used} credits below zero (position {position}, reserved {reserved}); a limit of {limit} would be passed"
    )]
    LimitBelowUse { account: ScopeId, position: i64, reserved: i64, used: i64, limit: i64 },
}

/// A posted amount from one account to another, as clearing sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligation {
    pub debtor: ScopeId,
    pub creditor: ScopeId,
    pub amount: Credits,
}

/// What clearing did among a set of scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearing {
    pub before: Vec<Obligation>,
    pub after: Vec<Obligation>,
}

/// Every account and the obligations between them, for people and tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub accounts: BTreeMap<ScopeId, Account>,
    pub obligations: Vec<Obligation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    accounts: BTreeMap<ScopeId, Account>,
    reservations: BTreeMap<TransferId, Reservation>,
    /// Settled reservations still remembered, oldest first.
    settled: std::collections::VecDeque<TransferId>,
    /// Posted amounts still owed between pairs of accounts, netted by clearing.
    obligations: BTreeMap<(ScopeId, ScopeId), i64>,
}

fn check_amount(amount: Credits) -> Result<i64, LedgerError> {
    if amount.0 <= 0 || amount.0 > AMOUNT_MAX {
        return Err(LedgerError::BadAmount(amount.0));
    }
    Ok(amount.0)
}

impl Ledger {
    pub fn accounts(&self) -> &BTreeMap<ScopeId, Account> {
        &self.accounts
    }

    pub fn account(&self, scope: &ScopeId) -> Result<&Account, LedgerError> {
        self.accounts.get(scope).ok_or_else(|| LedgerError::UnknownAccount(scope.clone()))
    }

    pub fn positions(&self) -> Positions {
        Positions { accounts: self.accounts.clone(), obligations: self.obligations().collect() }
    }

    pub fn reservation(&self, id: &TransferId) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    pub fn obligations(&self) -> impl Iterator<Item = Obligation> + '_ {
        self.obligations.iter().map(|((debtor, creditor), amount)| Obligation {
            debtor: debtor.clone(),
            creditor: creditor.clone(),
            amount: Credits(*amount),
        })
    }

    /// Opens an account at zero, with no credit line. Opening it again changes nothing.
    pub fn open(&mut self, scope: ScopeId) -> Applied {
        if self.accounts.contains_key(&scope) {
            return Applied::AlreadyDone;
        }
        self.accounts.insert(scope, Account::default());
        Applied::Done
    }

    /// Sets how far below zero `scope` may go. Refused when the account already uses
    /// more than the new limit.
    pub fn set_limit(&mut self, scope: &ScopeId, limit: Credits) -> Result<Applied, LedgerError> {
        if limit.0 < 0 || limit.0 > AMOUNT_MAX {
            return Err(LedgerError::BadLimit(limit.0));
        }
        let account = self.account(scope)?;
        let used = account.reserved - account.position;
        if used > limit.0 {
            return Err(LedgerError::LimitBelowUse {
                account: scope.clone(),
                position: account.position,
                reserved: account.reserved,
                used,
                limit: limit.0,
            });
        }
        let account = self.accounts.get_mut(scope).expect("checked above");
        if account.limit == limit.0 {
            return Ok(Applied::AlreadyDone);
        }
        account.limit = limit.0;
        Ok(Applied::Done)
    }

    /// Holds `amount` of `payer`'s credit for a transfer to be posted or voided later.
    pub fn reserve(
        &mut self,
        id: TransferId,
        payer: &ScopeId,
        amount: Credits,
    ) -> Result<Applied, LedgerError> {
        if let Some(existing) = self.reservations.get(&id) {
            if existing.payer == *payer && existing.amount == amount {
                return Ok(Applied::AlreadyDone);
            }
            return Err(LedgerError::Mismatch {
                id,
                existing: format!("{} from {}", existing.amount, existing.payer),
                asked: format!("{amount} from {payer}"),
            });
        }
        let amount = check_amount(amount)?;
        let account = self.account(payer)?;
        if account.available() < amount {
            return Err(LedgerError::OverLimit {
                account: payer.clone(),
                available: account.available(),
                amount,
            });
        }
        self.accounts.get_mut(payer).expect("checked above").reserved += amount;
        self.reservations
            .insert(id, Reservation { payer: payer.clone(), amount: Credits(amount), state: State::Pending });
        Ok(Applied::Done)
    }

    /// Posts a reservation: the payer pays each payee its amount (at most what was
    /// reserved, in total) and the rest of the hold is released.
    pub fn post(&mut self, id: TransferId, payees: &[(ScopeId, Credits)]) -> Result<Applied, LedgerError> {
        let reservation = self.reservations.get(&id).ok_or(LedgerError::UnknownTransfer(id))?;
        match reservation.state {
            State::Posted => return Ok(Applied::AlreadyDone),
            State::Voided => {
                return Err(LedgerError::Conflict { id, state: State::Voided, wanted: "posted" });
            }
            State::Pending => {}
        }
        if payees.len() > PAYEES_MAX {
            return Err(LedgerError::TooManyPayees(payees.len()));
        }
        let mut total = 0i64;
        for (payee, amount) in payees {
            self.account(payee)?;
            if amount.0 < 0 || amount.0 > AMOUNT_MAX {
                return Err(LedgerError::BadAmount(amount.0));
            }
            total += amount.0;
        }
        if total > reservation.amount.0 {
            return Err(LedgerError::OverReservation { id, reserved: reservation.amount.0, posted: total });
        }
        let payer = reservation.payer.clone();
        let held = reservation.amount.0;
        let account = self.accounts.get_mut(&payer).expect("a reservation's payer has an account");
        account.reserved -= held;
        account.position -= total;
        for (payee, amount) in payees {
            self.accounts.get_mut(payee).expect("checked above").position += amount.0;
            if *payee != payer && amount.0 > 0 {
                *self.obligations.entry((payer.clone(), payee.clone())).or_default() += amount.0;
            }
        }
        self.reservations.get_mut(&id).expect("checked above").state = State::Posted;
        self.settle(id);
        self.assert_balanced();
        Ok(Applied::Done)
    }

    /// Remembers a settled transfer, forgetting the oldest past [`SETTLED_REMEMBERED_MAX`].
    fn settle(&mut self, id: TransferId) {
        self.settled.push_back(id);
        while self.settled.len() > SETTLED_REMEMBERED_MAX {
            let old = self.settled.pop_front().expect("longer than the maximum");
            let forgotten = self.reservations.remove(&old);
            assert!(
                forgotten.is_some_and(|r| r.state != State::Pending),
                "only settled transfers are forgotten"
            );
        }
    }

    /// Releases a reservation without paying anything.
    pub fn void(&mut self, id: TransferId) -> Result<Applied, LedgerError> {
        let reservation = self.reservations.get(&id).ok_or(LedgerError::UnknownTransfer(id))?;
        match reservation.state {
            State::Voided => return Ok(Applied::AlreadyDone),
            State::Posted => {
                return Err(LedgerError::Conflict { id, state: State::Posted, wanted: "voided" });
            }
            State::Pending => {}
        }
        let (payer, held) = (reservation.payer.clone(), reservation.amount.0);
        self.accounts.get_mut(&payer).expect("a reservation's payer has an account").reserved -= held;
        self.reservations.get_mut(&id).expect("checked above").state = State::Voided;
        self.settle(id);
        Ok(Applied::Done)
    }

    /// Nets the obligations among `members` into at most one fewer transfers than there
    /// are members with a nonzero net (largest debtor to largest creditor, repeatedly).
    /// Positions do not move: clearing changes who owes whom, never how much anyone is owed.
    pub fn clear(&mut self, members: &BTreeSet<ScopeId>) -> Result<Clearing, LedgerError> {
        for member in members {
            self.account(member)?;
        }
        let inside =
            |(debtor, creditor): &(ScopeId, ScopeId)| members.contains(debtor) && members.contains(creditor);
        let before: Vec<Obligation> =
            self.obligations().filter(|o| inside(&(o.debtor.clone(), o.creditor.clone()))).collect();
        let mut net: BTreeMap<ScopeId, i64> = BTreeMap::new();
        for o in &before {
            *net.entry(o.debtor.clone()).or_default() -= o.amount.0;
            *net.entry(o.creditor.clone()).or_default() += o.amount.0;
        }
        let mut debtors: Vec<(i64, ScopeId)> =
            net.iter().filter(|(_, n)| **n < 0).map(|(s, n)| (-n, s.clone())).collect();
        let mut creditors: Vec<(i64, ScopeId)> =
            net.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (*n, s.clone())).collect();
        let mut after = vec![];
        loop {
            // Largest first; ties by name, so clearing is deterministic.
            debtors.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            creditors.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let (Some(debtor), Some(creditor)) = (debtors.first_mut(), creditors.first_mut()) else { break };
            let amount = debtor.0.min(creditor.0);
            after.push(Obligation {
                debtor: debtor.1.clone(),
                creditor: creditor.1.clone(),
                amount: Credits(amount),
            });
            debtor.0 -= amount;
            creditor.0 -= amount;
            debtors.retain(|d| d.0 > 0);
            creditors.retain(|c| c.0 > 0);
        }
        self.obligations.retain(|pair, _| !inside(pair));
        for o in &after {
            *self.obligations.entry((o.debtor.clone(), o.creditor.clone())).or_default() += o.amount.0;
        }
        Ok(Clearing { before, after })
    }

    /// The invariant of mutual credit: every credit is someone's debit.
    fn assert_balanced(&self) {
        let sum: i128 = self.accounts.values().map(|a| i128::from(a.position)).sum();
        assert_eq!(sum, 0, "the positions of all accounts sum to zero");
    }

    /// Checks every invariant; for tests and after replay.
    pub fn check(&self) -> Result<(), String> {
        let sum: i128 = self.accounts.values().map(|a| i128::from(a.position)).sum();
        if sum != 0 {
            return Err(format!("positions sum to {sum}, not zero"));
        }
        let mut reserved: BTreeMap<&ScopeId, i64> = BTreeMap::new();
        for r in self.reservations.values().filter(|r| r.state == State::Pending) {
            *reserved.entry(&r.payer).or_default() += r.amount.0;
        }
        for (scope, account) in &self.accounts {
            if account.reserved != reserved.get(scope).copied().unwrap_or(0) {
                return Err(format!(
                    "{scope} shows {} reserved; its pending reservations hold another sum",
                    account.reserved
                ));
            }
            if account.available() < 0 {
                return Err(format!("{scope} is past its limit: {account:?}"));
            }
        }
        Ok(())
    }
}
