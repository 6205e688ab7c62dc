import { BACKENDS } from '../support/backends.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('embedded-socket', BACKENDS['embedded-socket']);
