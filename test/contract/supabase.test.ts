import { BACKENDS } from '../support/backends.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('supabase', BACKENDS.supabase);
