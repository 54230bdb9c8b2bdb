"""Typed failures of a VM transaction, mapped from the programs' own error codes.

The router needs to tell a slippage miss (re-quote, maybe give up) from a closed pool (skip the
venue) from a stale blockhash (rebuild and resend): the raw `custom program error: 0x1775` says
none of that until it is mapped per program.
"""

from __future__ import annotations

from solders.pubkey import Pubkey
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorType,
)

from services.chain.svm.constants import CPMM_PROGRAM_ID, DLMM_PROGRAM_ID

SPL_TOKEN_INSUFFICIENT_FUNDS = 1  # spl-token TokenError::InsufficientFunds


class SvmTransactionError(Exception):
    """A transaction the VM rejected; `retryable` says whether resending (rebuilt) may succeed."""

    retryable = False

    def __init__(self, message: str, *, code: int | None = None, logs: list[str] | None = None):
        super().__init__(message)
        self.code = code
        self.logs = logs or []


class SlippageExceededError(SvmTransactionError):
    """The program would pay less than the instruction's minimum out (CPMM 6005, DLMM 6003)."""


class PoolNotOpenError(SvmTransactionError):
    """The pool refuses swaps: before its open time, or disabled (CPMM 6000 NotApproved,
    DLMM 6042 PoolDisabled, which a launch pair also raises before its activation time)."""


class InsufficientLiquidityError(SvmTransactionError):
    """The pool has no liquidity left on the swap's side (DLMM 6036, 6037).

    A DLMM swap that empties the bins it was given searches the pair's bitmap for more; past
    the pair's own bitmap range the program wants the bitmap-extension account, which the swap
    passes as "none" (6036 BitmapExtensionAccountIsNotProvided), and within it may find none
    (6037 CannotFindNonZeroLiquidityBinArrayId). Either way: no liquidity at this price, not
    a malformed transaction.
    """


class InsufficientFundsError(SvmTransactionError):
    """The wallet lacks the input tokens, or the lamports to pay the fee."""


class BlockhashExpiredError(SvmTransactionError):
    """The transaction's blockhash is unknown or expired: rebuild it with a fresh one and resend."""

    retryable = True


class ProgramFailedError(SvmTransactionError):
    """Any other program or runtime failure, carried with its code and logs."""


# (program, custom code) -> typed error; codes from each program's error enum.
_CUSTOM: dict[tuple[Pubkey, int], type[SvmTransactionError]] = {
    (CPMM_PROGRAM_ID, 6000): PoolNotOpenError,  # NotApproved
    (CPMM_PROGRAM_ID, 6005): SlippageExceededError,  # ExceededSlippage
    (DLMM_PROGRAM_ID, 6003): SlippageExceededError,  # ExceededAmountSlippageTolerance
    (DLMM_PROGRAM_ID, 6036): InsufficientLiquidityError,  # BitmapExtensionAccountIsNotProvided
    (DLMM_PROGRAM_ID, 6037): InsufficientLiquidityError,  # CannotFindNonZeroLiquidityBinArrayId
    (DLMM_PROGRAM_ID, 6042): PoolNotOpenError,  # PoolDisabled: also before activation
}

# solders' fieldless errors are not hashable: matched by equality, in order.
_FIELDLESS: list[tuple[TransactionErrorFieldless, type[SvmTransactionError]]] = [
    (TransactionErrorFieldless.BlockhashNotFound, BlockhashExpiredError),
    (TransactionErrorFieldless.InsufficientFundsForFee, InsufficientFundsError),
    (TransactionErrorFieldless.AccountNotFound, InsufficientFundsError),  # fee payer never funded
]


def map_error(
    err: TransactionErrorType, programs: list[Pubkey], logs: list[str]
) -> SvmTransactionError:
    """Turn a failed transaction's error into a typed one; `programs[i]` ran instruction i."""
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        if isinstance(inner, InstructionErrorCustom):
            program = programs[err.index] if err.index < len(programs) else None
            code = inner.code
            if program is not None and (program, code) in _CUSTOM:
                return _CUSTOM[(program, code)](f"{program} error {code}", code=code, logs=logs)
            if code == SPL_TOKEN_INSUFFICIENT_FUNDS and any(
                "insufficient funds" in line for line in logs
            ):
                return InsufficientFundsError("insufficient funds", code=code, logs=logs)
            return ProgramFailedError(f"{program} error {code}", code=code, logs=logs)
        return ProgramFailedError(f"instruction {err.index}: {inner}", logs=logs)
    for fieldless, error in _FIELDLESS:
        if err == fieldless:
            return error(str(err), logs=logs)
    return ProgramFailedError(str(err), logs=logs)
